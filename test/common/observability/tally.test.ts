import assert from 'node:assert/strict';
import { Tally } from '../../../src/common/observability/tally.js';

describe('Tally', () => {
  it('sums deltas per label set until drained, then starts from zero', () => {
    const t = new Tally<'method' | 'code'>();
    t.add({ method: 'A', code: 'OK' });
    t.add({ method: 'A', code: 'OK' }, 2);
    t.add({ method: 'A', code: 'DENIED' });
    t.add({ method: 'B', code: 'OK' }, 1);
    t.add({ method: 'B', code: 'OK' }, -1);
    const seen: [string, number][] = [];
    t.drain((labels, n) => seen.push([`${labels.method}/${labels.code}`, n]));
    assert.deepEqual(seen.sort(), [['A/DENIED', 1], ['A/OK', 3], ['B/OK', 0]], 'a series that nets to zero is still reported');
    const again: unknown[] = [];
    t.drain((labels, n) => again.push([labels, n]));
    assert.deepEqual(again, []);
  });
});
