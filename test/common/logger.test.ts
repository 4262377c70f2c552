import assert from 'node:assert/strict';
import { createLogger, type Logger } from '../../src/common/logger.js';

// Every field name that may carry a secret in this codebase (camelCase, snake_case and proto names).
const SECRET_FIELDS = [
  'privateKey',
  'private_key',
  'key',
  'keyPem',
  'x509_svid_key',
  'token',
  'joinToken',
  'join_token',
  'jwt',
  'svid',
  'password',
  'authorization',
  'csr',
  'privateKeyPkcs8',
  'upstreamPrivateKey',
  'caPrivateKey',
];

const LEVELS = ['info', 'warn', 'error'] as const;

interface Captured {
  logger: Logger;
  /** The raw output, every line: leak checks search this, so nothing escapes through parsing. */
  raw(): string;
  last(): Record<string, unknown>;
}

function capture(): Captured {
  const lines: string[] = [];
  const logger = createLogger({ level: 'trace', destination: { write: (line: string) => void lines.push(line) } });
  return {
    logger,
    raw: () => lines.join(''),
    last: () => {
      assert.ok(lines.length > 0, 'nothing was logged');
      return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
    },
  };
}

/** Wraps `leaf` under `depth` levels of harmless keys: depth 0 is the leaf itself. */
function nest(leaf: Record<string, unknown>, depth: number): Record<string, unknown> {
  let obj = leaf;
  for (let d = depth; d > 0; d--) obj = { [`level${d}`]: obj, sibling: `visible-${d}` };
  return obj;
}

function at(obj: Record<string, unknown>, depth: number): Record<string, unknown> {
  let cur = obj;
  for (let d = 1; d <= depth; d++) cur = cur[`level${d}`] as Record<string, unknown>;
  return cur;
}

describe('logger redaction', () => {
  for (const level of LEVELS) {
    for (const depth of [0, 1, 2]) {
      it(`${level}: redacts every secret field ${depth} level(s) down`, () => {
        for (const field of SECRET_FIELDS) {
          const out = capture();
          const secret = `SECRET-${field}-${level}-${depth}`;
          out.logger[level](nest({ [field]: secret, harmless: 'shown' }, depth), 'with a secret');
          assert.ok(!out.raw().includes(secret), `${field} leaked at depth ${depth} via ${level}: ${out.raw()}`);
          const leaf = at(out.last(), depth);
          assert.equal(leaf[field], '[redacted]', `${field} at depth ${depth}`);
          assert.equal(leaf.harmless, 'shown');
          assert.equal(out.last().msg, 'with a secret');
        }
      });
    }
  }

  it('negative control: a field not in the list is printed, so the checks above can see a leak', () => {
    for (const depth of [0, 1, 2]) {
      const out = capture();
      out.logger.info(nest({ notASecret: `VISIBLE-${depth}` }, depth));
      assert.ok(out.raw().includes(`VISIBLE-${depth}`));
      assert.equal(at(out.last(), depth).notASecret, `VISIBLE-${depth}`);
    }
  });

  it('redacts secret values that are objects, not only strings', () => {
    const out = capture();
    out.logger.info({ svid: { chain: 'CHAIN-SECRET', key: 'KEY-SECRET' } });
    assert.ok(!out.raw().includes('SECRET'));
    assert.equal(out.last().svid, '[redacted]');
  });

  it('matches field names regardless of case, "_" and "-"', () => {
    const out = capture();
    out.logger.info({ PrivateKey: 'CASE-SECRET-1', JOIN_TOKEN: 'CASE-SECRET-2', headers: { Authorization: 'CASE-SECRET-3', 'x509-svid-key': 'CASE-SECRET-4' } });
    assert.ok(!out.raw().includes('CASE-SECRET'), out.raw());
  });

  it('redacts child logger bindings at top level and one and two levels down, and still redacts log objects', () => {
    const out = capture();
    const child = out.logger.child({
      component: 'sync',
      token: 'BIND-SECRET-0',
      peer: { joinToken: 'BIND-SECRET-1', inner: { jwt: 'BIND-SECRET-2' } },
    });
    const grandchild = child.child({ privateKey: 'BIND-SECRET-3', agentId: 'spiffe://example.org/agent' }, { level: 'debug' });
    grandchild.warn({ csr: 'OBJ-SECRET' }, 'from a grandchild');
    assert.ok(!out.raw().includes('SECRET'), out.raw());
    const line = out.last();
    assert.equal(line.component, 'sync');
    assert.equal(line.agentId, 'spiffe://example.org/agent');
    assert.equal(line.token, '[redacted]');
    assert.deepEqual(line.peer, { joinToken: '[redacted]', inner: { jwt: '[redacted]' } });
    assert.equal(line.privateKey, '[redacted]');
    assert.equal(line.csr, '[redacted]');
  });

  it('prints an Error\'s harmless message and stack but redacts secret properties on it', () => {
    for (const style of ['error-first', 'err-field'] as const) {
      const out = capture();
      const err = Object.assign(new Error('renewal failed: server unavailable'), { token: 'ERR-SECRET', code: 'unavailable' });
      if (style === 'error-first') out.logger.error(err, 'renewal failed');
      else out.logger.error({ err }, 'renewal failed');
      assert.ok(!out.raw().includes('ERR-SECRET'), out.raw());
      const logged = out.last().err as Record<string, unknown>;
      assert.equal(logged.type, 'Error');
      assert.equal(logged.message, 'renewal failed: server unavailable');
      assert.match(String(logged.stack), /renewal failed: server unavailable\n\s+at /);
      assert.equal(logged.code, 'unavailable');
      assert.equal(logged.token, '[redacted]');
    }
  });

  it('redacts secrets on the errors inside an AggregateError and on an error\'s cause', () => {
    const out = capture();
    const inner = Object.assign(new Error('connect ECONNREFUSED'), { authorization: 'AGG-SECRET' });
    const cause = Object.assign(new Error('bad token'), { joinToken: 'CAUSE-SECRET' });
    out.logger.error({ err: new AggregateError([inner], 'all attempts failed', { cause }) }, 'connect failed');
    assert.ok(!out.raw().includes('AGG-SECRET'), out.raw());
    assert.ok(!out.raw().includes('CAUSE-SECRET'), out.raw());
    assert.match(out.raw(), /all attempts failed/);
  });

  it('redacts deeper than two levels and inside arrays (a whole Workload API response)', () => {
    const out = capture();
    const res = {
      svids: [{ spiffe_id: 'spiffe://example.org/web', x509_svid: 'CERT', x509_svid_key: 'DEEP-SECRET-KEY', bundle: 'B' }],
    };
    out.logger.info({ res, wrapper: { a: { b: { c: { token: 'DEEP-SECRET-TOKEN' } } } } }, 'response');
    assert.ok(!out.raw().includes('DEEP-SECRET'), out.raw());
    assert.match(out.raw(), /spiffe:\/\/example\.org\/web/);
  });

  it('never prints key bytes from a cached identity, in any encoding', () => {
    const out = capture();
    const keyBytes = Buffer.from('PKCS8-PRIVATE-KEY-BYTES');
    const identity = { entry: { id: 'e1', spiffeId: 'spiffe://example.org/db' }, chain: [Buffer.from('cert')], privateKeyPkcs8: keyBytes, notAfter: 1 };
    out.logger.info({ identity }, 'minted');
    const raw = out.raw();
    for (const encoded of [keyBytes.toString('utf8'), keyBytes.toString('base64'), keyBytes.toString('hex'), [...keyBytes].join(',')]) {
      assert.ok(!raw.includes(encoded), `key bytes leaked as ${encoded}`);
    }
    assert.match(raw, /spiffe:\/\/example\.org\/db/);
  });

  it('logs Buffers (top level and nested) without throwing, as a byte count', () => {
    const out = capture();
    out.logger.info({ challenge: Buffer.alloc(32, 1), nested: { serial: new Uint8Array(16) } }, 'binary');
    const line = out.last();
    assert.equal(line.challenge, '[Buffer 32 bytes]');
    assert.deepEqual(line.nested, { serial: '[Uint8Array 16 bytes]' });
  });

  it('survives circular objects and never expands past the depth limit', () => {
    const out = capture();
    const loop: Record<string, unknown> = { name: 'loop' };
    loop.self = loop;
    let deep: Record<string, unknown> = { token: 'VERY-DEEP-SECRET' };
    for (let i = 0; i < 20; i++) deep = { d: deep };
    out.logger.info({ loop, deep }, 'odd shapes');
    assert.ok(!out.raw().includes('VERY-DEEP-SECRET'));
    assert.equal((out.last().loop as Record<string, unknown>).self, '[Circular]');
  });

  it('does not change the caller\'s objects', () => {
    const out = capture();
    const payload = { token: 'T', nested: { jwt: 'J', buf: Buffer.from('x') } };
    const err = Object.assign(new Error('e'), { token: 'T2' });
    out.logger.info({ payload, err });
    assert.equal(payload.token, 'T');
    assert.equal(payload.nested.jwt, 'J');
    assert.ok(Buffer.isBuffer(payload.nested.buf));
    assert.equal(err.token, 'T2');
  });
});
