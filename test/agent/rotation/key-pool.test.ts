import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { ManualClock } from '../../../src/agent/rotation/clock.js';
import { KeyPool, prepareKey, type PreparedKey } from '../../../src/agent/rotation/key-pool.js';
import { parseCsr } from '../../../src/common/x509/csr.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function settle(pool: KeyPool, expected: number): Promise<void> {
  for (let i = 0; i < 500 && pool.size !== expected; i++) await turn();
  assert.equal(pool.size, expected);
}

function assertConsistent(k: PreparedKey): void {
  const csr = parseCsr(k.csr); // verifies the proof of possession
  assert.ok(csr.spkiDer.equals(k.spki), 'the CSR carries the key');
  const fromPrivate = createPublicKey(createPrivateKey({ key: k.privateKeyPkcs8, format: 'der', type: 'pkcs8' }));
  assert.ok(fromPrivate.export({ format: 'der', type: 'spki' }).equals(k.spki), 'the private key belongs to the public key');
}

describe('key pool', () => {
  it('prepares a P-256 key whose CSR, SPKI and PKCS#8 belong together', () => {
    const k = prepareKey();
    assertConsistent(k);
    assert.equal(createPublicKey({ key: k.spki, format: 'der', type: 'spki' }).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  it('hands out a fresh key when empty, and fills up to the target once quiet, in chunks', async () => {
    const clock = new ManualClock(0);
    let target = 45;
    const pool = new KeyPool({ target: () => target, quietMs: 1000, chunk: 10, clock });
    assertConsistent(pool.take());
    assert.equal(pool.size, 0, 'nothing made ahead before the agent is quiet');
    clock.advance(999);
    assert.equal(pool.size, 0);
    clock.advance(1);
    assert.equal(pool.size, 10, 'the first chunk at once');
    await settle(pool, 45);
    target = 20;
    pool.take();
    clock.advance(1000);
    assert.equal(pool.size, 20, 'trimmed to a smaller target');
  });

  it('never hands out the same key twice, and refills after keys are taken', async () => {
    const clock = new ManualClock(0);
    const pool = new KeyPool({ target: () => 30, quietMs: 10, chunk: 7, clock });
    pool.refillWhenQuiet();
    clock.advance(10);
    await settle(pool, 30);
    const taken = Array.from({ length: 40 }, () => pool.take());
    assert.equal(new Set(taken.map((k) => k.privateKeyPkcs8.toString('hex'))).size, 40);
    assert.equal(pool.size, 0);
    taken.slice(0, 3).forEach(assertConsistent);
    clock.advance(10);
    await settle(pool, 30);
  });

  it('pauses a refill while keys are being taken, and resumes when quiet again', async () => {
    const clock = new ManualClock(0);
    const pool = new KeyPool({ target: () => 100, quietMs: 50, chunk: 5, clock });
    pool.refillWhenQuiet();
    clock.advance(50);
    assert.equal(pool.size, 5);
    pool.take();
    for (let i = 0; i < 20; i++) await turn();
    assert.equal(pool.size, 4, 'no chunk made while the quiet timer runs');
    clock.advance(50);
    await settle(pool, 100);
  });

  it('caps the pool at maxSize, and stop() drops every ready key for good', async () => {
    const clock = new ManualClock(0);
    const pool = new KeyPool({ target: () => 10_000, maxSize: 12, quietMs: 1, chunk: 50, clock });
    pool.refillWhenQuiet();
    clock.advance(1);
    await settle(pool, 12);
    pool.stop();
    assert.equal(pool.size, 0);
    pool.refillWhenQuiet();
    clock.advance(10);
    assert.equal(pool.size, 0);
    assert.equal(clock.pending, 0);
  });
});
