// The CSR verify pool against parseCsr itself: same verdict per CSR, in request order, inline and on
// real worker threads; a worker that dies mid-batch loses nothing and is replaced; close() ends
// every thread. The path taken is observed (worker replies counted), never inferred from timing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { EmblemError, isEmblemError } from '../../src/common/errors.js';
import { createCsr, parseCsr } from '../../src/common/x509/csr.js';
import { bitString, nullValue, oid, sequence, smallInteger, tlv } from '../../src/common/x509/der.js';
import { exportSpkiDer, generateKeyPair, type KeyPair } from '../../src/common/x509/keys.js';
import { OID } from '../../src/common/x509/oids.js';
import { buildServerConfig } from '../../src/server/config.js';
import { createCsrVerifyPool, INLINE_BELOW, type CsrCheck, type CsrVerifyPool } from '../../src/server/ca/csr-verify-pool.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { captureLogs } from '../helpers/server-harness.js';
import { ed25519KeyPair, flipByte, p384KeyPair, rsaKeyPair } from '../common/x509/fixtures.js';

/** A CSR over any key node:crypto can sign with, including ones Emblem refuses. */
function handCsr(keys: KeyPair, algorithm: Buffer): Buffer {
  const info = sequence(smallInteger(0), sequence(), keys.publicKey.export({ format: 'der', type: 'spki' }), tlv(0xa0));
  return sequence(info, algorithm, bitString(sign('sha256', info, keys.privateKey)));
}

/** Valid CSRs of every accepted key type, and every way of being refused. */
function mixedCsrs(): { name: string; der: Buffer }[] {
  const valid = createCsr(generateKeyPair());
  return [
    { name: 'p256', der: valid },
    { name: 'p384', der: createCsr(p384KeyPair()) },
    { name: 'rsa2048', der: createCsr(rsaKeyPair(2048)) },
    { name: 'ed25519', der: createCsr(ed25519KeyPair()) },
    { name: 'bad signature', der: flipByte(createCsr(generateKeyPair()), -1) },
    { name: 'garbage', der: Buffer.from('not a certification request') },
    { name: 'truncated', der: valid.subarray(0, valid.length - 5) },
    { name: 'empty', der: Buffer.alloc(0) },
    { name: 'secp256k1', der: handCsr(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }), sequence(oid(OID.ecdsaWithSha256))) },
    { name: 'rsa1024', der: handCsr(rsaKeyPair(1024), sequence(oid(OID.sha256WithRsa), nullValue())) },
  ];
}

/** What today's inline path gives: the SPKI the signer would certify, or parseCsr's error. */
function expected(der: Buffer): { spki: string } | { code: string; message: string } {
  try {
    return { spki: exportSpkiDer(parseCsr(der).publicKey).toString('hex') };
  } catch (err) {
    assert.ok(isEmblemError(err), `parseCsr threw a non-Emblem error: ${String(err)}`);
    return { code: err.code, message: err.message };
  }
}

function comparable(check: CsrCheck): { spki: string } | { code: string; message: string } {
  if ('spki' in check) return { spki: check.spki.toString('hex') };
  assert.ok(check.error instanceof EmblemError, `not an EmblemError: ${String(check.error)}`);
  return { code: check.error.code, message: check.error.message };
}

/** A batch of `size` CSRs cycling through the mix, so every kind lands in every chunk. */
function batchOf(size: number, mix: { der: Buffer }[]): Buffer[] {
  return Array.from({ length: size }, (_, i) => mix[i % mix.length]!.der);
}

/** Counts the chunk replies each worker sends (its ready message is sent before we listen). */
function countReplies(workers: readonly Worker[]): () => number {
  let replies = 0;
  for (const w of workers) w.on('message', () => replies++);
  return () => replies;
}

/** Starts the pool's workers (the first large batch does, and is itself checked inline) and waits for them. */
async function started(pool: CsrVerifyPool, mix: { der: Buffer }[]): Promise<void> {
  await pool.verify(batchOf(INLINE_BELOW, mix));
  await pool.ready();
}

describe('CSR verify pool', function () {
  // RSA key generation and worker start-up under tsx.
  this.timeout(30_000);
  const { logger, logs } = captureLogs();
  const pools: CsrVerifyPool[] = [];
  const newPool = (workers: number) => {
    const pool = createCsrVerifyPool({ workers, logger });
    pools.push(pool);
    return pool;
  };
  let mix: { name: string; der: Buffer }[];

  before(() => (mix = mixedCsrs()));
  after(async () => {
    for (const pool of pools) await pool.close();
  });

  it('the mix covers acceptance and each kind of refusal', () => {
    const verdicts = mix.map((m) => [m.name, expected(m.der)] as const);
    for (const [name, verdict] of verdicts.slice(0, 4)) assert.ok('spki' in verdict, `${name} should be accepted`);
    for (const [name, verdict] of verdicts.slice(4)) assert.ok('code' in verdict && verdict.code === 'invalid_argument', `${name} should be refused`);
    const messages = verdicts.slice(4).map(([, v]) => ('message' in v ? v.message : ''));
    assert.match(messages.join('\n'), /signature does not verify/);
    assert.match(messages.join('\n'), /malformed DER/);
    assert.match(messages.join('\n'), /curve .* is not supported/);
    assert.match(messages.join('\n'), /too small/);
  });

  for (const workers of [0, 1, 2]) {
    for (const size of [INLINE_BELOW - 1, INLINE_BELOW, 3 * INLINE_BELOW + 1]) {
      it(`gives parseCsr's verdicts in request order: ${workers} workers, ${size} CSRs`, async () => {
        const pool = newPool(workers);
        if (size >= INLINE_BELOW) await started(pool, mix);
        assert.equal(pool.workers().length, size >= INLINE_BELOW ? workers : 0, 'workers start with the first large batch only');
        const replies = countReplies(pool.workers());
        const csrs = batchOf(size, mix);
        const checks = await pool.verify(csrs);
        assert.deepEqual(checks.map(comparable), csrs.map(expected));
        assert.equal(replies(), size >= INLINE_BELOW ? workers : 0, 'one reply per worker for a large batch, none for a small one');
      });
    }
  }

  it('checks a batch with a non-buffer item on the main thread, with parseCsr\'s verdict for it', async () => {
    const pool = newPool(2);
    await started(pool, mix);
    const replies = countReplies(pool.workers());
    const csrs = [...batchOf(INLINE_BELOW, mix), 'MIIB' as unknown as Buffer];
    assert.deepEqual((await pool.verify(csrs)).map(comparable), csrs.map(expected));
    assert.equal(replies(), 0);
  });

  it('checks on the main thread the chunk of a worker that crashes before answering, and replaces the worker', async () => {
    const pool = newPool(2);
    await started(pool, mix);
    const [doomed, survivor] = pool.workers();
    const exited = new Promise<number>((resolve) => doomed!.once('exit', resolve));
    // Messages are handled in order: the worker throws on this one before it reaches the chunk.
    doomed!.postMessage(null);
    const csrs = batchOf(2 * INLINE_BELOW, mix);
    const checks = await pool.verify(csrs);
    assert.deepEqual(checks.map(comparable), csrs.map(expected));
    assert.equal(await exited, 1);
    const warning = logs.records().find((r) => r['msg'] === 'CSR verify worker exited; its CSRs were checked on the main thread; replacing it');
    assert.ok(warning, 'the crash is logged');
    assert.equal(warning['chunks'], 1);

    await pool.ready();
    const now = pool.workers();
    assert.equal(now.length, 2);
    assert.ok(now.includes(survivor!) && !now.includes(doomed!), 'the dead worker is replaced, the other kept');
    const replies = countReplies(now);
    assert.deepEqual((await pool.verify(csrs)).map(comparable), csrs.map(expected));
    assert.equal(replies(), 2, 'the replacement takes chunks');
  });

  it('gives the right verdicts when a worker is terminated mid-batch', async () => {
    const pool = newPool(2);
    await started(pool, mix);
    const [victim] = pool.workers();
    const csrs = batchOf(4 * INLINE_BELOW, mix);
    const pending = pool.verify(csrs);
    void victim!.terminate();
    assert.deepEqual((await pending).map(comparable), csrs.map(expected));
    await pool.ready();
    assert.equal(pool.workers().length, 2);
    assert.ok(!pool.workers().includes(victim!));
  });

  it('close() ends every worker; later batches are checked on the main thread without new threads', async () => {
    const pool = newPool(2);
    await started(pool, mix);
    const exits = pool.workers().map((w) => new Promise<number>((resolve) => w.once('exit', resolve)));
    assert.equal(exits.length, 2);
    await pool.close();
    await Promise.all(exits);
    assert.equal(pool.workers().length, 0);
    const csrs = batchOf(2 * INLINE_BELOW, mix);
    assert.deepEqual((await pool.verify(csrs)).map(comparable), csrs.map(expected));
    assert.equal(pool.workers().length, 0);
  });

  it('a process that used the pool and closed it exits by itself', async () => {
    const poolUrl = pathToFileURL(`${REPO_ROOT}/src/server/ca/csr-verify-pool.ts`).href;
    const csrUrl = pathToFileURL(`${REPO_ROOT}/src/common/x509/csr.ts`).href;
    const keysUrl = pathToFileURL(`${REPO_ROOT}/src/common/x509/keys.ts`).href;
    const script = `
      const { createCsrVerifyPool } = await import(${JSON.stringify(poolUrl)});
      const { createCsr } = await import(${JSON.stringify(csrUrl)});
      const { generateKeyPair } = await import(${JSON.stringify(keysUrl)});
      const logger = { child: () => logger, debug() {}, warn: console.error, error: console.error };
      const pool = createCsrVerifyPool({ workers: 2, logger });
      const csrs = Array.from({ length: 40 }, () => createCsr(generateKeyPair()));
      await pool.verify(csrs);
      await pool.ready();
      const checks = await pool.verify(csrs);
      const threads = pool.workers().length;
      await pool.close();
      console.log(JSON.stringify({ threads, ok: checks.filter((c) => 'spki' in c).length }));
    `;
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], { cwd: REPO_ROOT, encoding: 'utf8' }, (err, out, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out),
      );
    });
    assert.deepEqual(JSON.parse(stdout), { threads: 2, ok: 40 });
  });

  it('refuses a bad number of workers', () => {
    for (const workers of [-1, 1.5, 65, Number.NaN]) {
      assert.throws(() => createCsrVerifyPool({ workers, logger }), (err: unknown) => isEmblemError(err, 'invalid_argument'));
    }
  });
});

describe('csrVerifyWorkers config key', () => {
  const build = (csrVerifyWorkers: unknown) => buildServerConfig({ trustDomain: 'example.org', csrVerifyWorkers });

  it('defaults to the CPU threads, at most 4', async () => {
    const { availableParallelism } = await import('node:os');
    assert.equal(buildServerConfig({ trustDomain: 'example.org' }).csrVerifyWorkers, Math.min(availableParallelism(), 4));
  });

  it('takes a number from the file or digits from the flag, 0 included', () => {
    assert.equal(build(0).csrVerifyWorkers, 0);
    assert.equal(build(3).csrVerifyWorkers, 3);
    assert.equal(build('8').csrVerifyWorkers, 8);
    assert.equal(build('0').csrVerifyWorkers, 0);
  });

  it('refuses anything but a whole number from 0 to 64, naming the key', () => {
    for (const bad of [-1, 1.5, 65, '', ' 2', '2x', '-1', '0x10', '1e1', true, [2], 'four']) {
      assert.throws(
        () => build(bad),
        (err: unknown) => isEmblemError(err, 'invalid_argument') && /^csrVerifyWorkers must be a whole number from 0 to 64, got /.test(err.message),
        `accepted ${JSON.stringify(bad)}`,
      );
    }
  });
});
