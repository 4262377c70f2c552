import assert from 'node:assert/strict';
import { isEmblemError } from '../../src/common/errors.js';
import { formatSelector, isSubset, parseSelector, selectorKeys, validateSelector } from '../../src/common/selectors.js';

const invalid = (fn: () => unknown, match: RegExp): void => {
  assert.throws(fn, (err: unknown) => isEmblemError(err, 'invalid_argument') && match.test(err.message));
};

describe('selectors', () => {
  it('splits at the first colon only', () => {
    assert.deepEqual(parseSelector('unix:uid:1000'), { type: 'unix', value: 'uid:1000' });
    assert.deepEqual(parseSelector('k8s:ns:default:extra'), { type: 'k8s', value: 'ns:default:extra' });
    assert.deepEqual(parseSelector('docker:label:a=b c'), { type: 'docker', value: 'label:a=b c' });
  });

  it('rejects text without a type', () => {
    invalid(() => parseSelector('nocolon'), /type:value/);
    invalid(() => parseSelector(':value'), /type:value/);
    invalid(() => parseSelector(''), /type:value/);
  });

  it('rejects an empty value', () => invalid(() => parseSelector('unix:'), /empty value/));

  it('restricts the type to [a-z0-9_-]{1,64}', () => {
    assert.equal(parseSelector('a_b-9:x').type, 'a_b-9');
    assert.equal(parseSelector(`${'t'.repeat(64)}:x`).type.length, 64);
    invalid(() => parseSelector(`${'t'.repeat(65)}:x`), /selector type/);
    invalid(() => parseSelector('Unix:uid:1'), /selector type/);
    invalid(() => parseSelector('un ix:uid:1'), /selector type/);
    invalid(() => parseSelector('un.ix:uid:1'), /selector type/);
  });

  it('limits the value to 1024 bytes', () => {
    assert.equal(parseSelector(`t:${'v'.repeat(1024)}`).value.length, 1024);
    invalid(() => parseSelector(`t:${'v'.repeat(1025)}`), /longer than 1024 bytes/);
    invalid(() => parseSelector(`t:${'é'.repeat(513)}`), /longer than 1024 bytes/);
  });

  it('validateSelector returns a fresh, checked copy', () => {
    const input = { type: 'unix', value: 'uid:0' };
    const out = validateSelector(input);
    assert.deepEqual(out, input);
    assert.notEqual(out, input);
    invalid(() => validateSelector({ type: '', value: 'x' }), /selector type/);
  });

  it('formats back to type:value', () => {
    assert.equal(formatSelector(parseSelector('unix:uid:1000')), 'unix:uid:1000');
  });

  it('isSubset compares selector sets', () => {
    const workload = selectorKeys([parseSelector('unix:uid:1000'), parseSelector('unix:gid:50'), parseSelector('unix:uid:1000')]);
    assert.equal(workload.size, 2);
    assert.equal(isSubset([parseSelector('unix:uid:1000')], workload), true);
    assert.equal(isSubset([parseSelector('unix:uid:1000'), parseSelector('unix:gid:50')], workload), true);
    assert.equal(isSubset([parseSelector('unix:uid:1000'), parseSelector('unix:gid:51')], workload), false);
    assert.equal(isSubset([], workload), true);
    assert.equal(isSubset([parseSelector('unix:uid:100')], workload), false);
  });
});
