// kill -9 of a server in the middle of rotations and operator actions must leave a journal, key
// directory and bundle that the next start() turns into a consistent state. This file is both the
// mocha test and (with EMBLEM_CA_CRASH_CHILD set) the child process that gets killed. The child
// kills itself with SIGKILL right after its Nth durable write (datastore or key file), so every gap
// between two writes is a crash point the test can hit, not only the ones a timer happens to hit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isEmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { exportSpkiDer, generateKeyPair } from '../../../src/common/x509/keys.js';
import { createAuthorityManager, type AuthorityManager } from '../../../src/server/ca/authority-manager.js';
import { diskKeyManager, type KeyManager } from '../../../src/server/ca/key-manager.js';
import { createSvidSigner } from '../../../src/server/ca/svid-signer.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { AuthorityKind, Datastore } from '../../../src/server/datastore/types.js';

const TD = 'example.org';
const TTL = 30;
const CHILD_ENV = 'EMBLEM_CA_CRASH_CHILD';

function manager(datastore: Datastore, keyManager: KeyManager, now: () => number): AuthorityManager {
  return createAuthorityManager({ datastore, keyManager, trustDomain: TD, caTtlSeconds: TTL, logger: silentLogger(), now });
}

/** The same object, but `after()` runs once each listed method's promise has resolved. */
function afterEachWrite<T extends object>(target: T, methods: readonly string[], after: () => void): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      const value: unknown = Reflect.get(t, prop, receiver);
      if (typeof value !== 'function') return value;
      if (!methods.includes(String(prop))) return value.bind(t);
      return async (...args: unknown[]) => {
        const result: unknown = await value.apply(t, args);
        after();
        return result;
      };
    },
  });
}

/** Child: rotate, act like an operator and sign, one clock second per step, until its Nth write. */
async function runChild(): Promise<void> {
  const dir = process.env[CHILD_ENV]!;
  const t0 = Number(process.env.EMBLEM_CA_CRASH_T0);
  let step = Number(process.env.EMBLEM_CA_CRASH_FROM);
  let now = t0 + step * 1000;
  let writes = Number(process.env.EMBLEM_CA_CRASH_AFTER);
  const countDown = (): void => {
    if (--writes === 0) process.kill(process.pid, 'SIGKILL');
  };
  const store = await openDatastore({ kind: 'level', dataDir: path.join(dir, 'data') });
  const ds = afterEachWrite(store, ['putAuthority', 'deleteAuthority', 'setBundle', 'recordSvids'], countDown);
  const keys = afterEachWrite(diskKeyManager(path.join(dir, 'keys')), ['generate', 'delete'], countDown);
  const m = manager(ds, keys, () => now);
  await m.start();
  const signer = createSvidSigner({ authorities: m, datastore: ds, trustDomain: TD, logger: silentLogger(), now: () => now });
  const key = exportSpkiDer(generateKeyPair().publicKey);
  const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];
  const ignoreRefusal = (err: unknown): void => {
    if (!isEmblemError(err, 'failed_precondition')) throw err;
  };
  for (;;) {
    step++;
    now = t0 + step * 1000;
    process.stdout.write(`step ${step}\n`);
    await m.rotate();
    const kind: AuthorityKind = Math.random() < 0.5 ? 'x509' : 'jwt';
    const rows = m.list().filter((a) => a.kind === kind);
    const r = Math.random();
    if (r < 0.2) await m.prepare(kind).catch(ignoreRefusal);
    else if (r < 0.4) {
      const p = pick(rows.filter((a) => a.status === 'prepared'));
      if (p) await m.activate(p.id);
    } else if (r < 0.55) {
      const o = pick(rows.filter((a) => a.status === 'old'));
      if (o) await m.taint(o.id);
    } else if (r < 0.7) {
      const t = pick(rows.filter((a) => a.status === 'tainted'));
      if (t) await m.revoke(t.id);
    }
    await signer.signX509Batch(
      Array.from({ length: 5 }, (_, i) => ({ spiffeId: `spiffe://${TD}/w/${step}/${i}`, publicKey: key, entryId: 'e', agentId: 'crash', kind: 'x509' as const })),
    );
  }
}

/** Runs the child until it kills itself after `writes` writes; returns its last reported step. */
function runUntilKilled(dir: string, t0: number, from: number, writes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      cwd: process.cwd(),
      env: {
        ...process.env,
        [CHILD_ENV]: dir,
        EMBLEM_CA_CRASH_T0: String(t0),
        EMBLEM_CA_CRASH_FROM: String(from),
        EMBLEM_CA_CRASH_AFTER: String(writes),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let last = from;
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      for (const m of chunk.matchAll(/step (\d+)/g)) last = Math.max(last, Number(m[1]));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(last);
      else reject(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
}

async function checkConsistent(dir: string, nowMs: number): Promise<void> {
  const ds = await openDatastore({ kind: 'level', dataDir: path.join(dir, 'data') });
  try {
    const m = manager(ds, diskKeyManager(path.join(dir, 'keys')), () => nowMs);
    await m.start();
    const nowSec = Math.floor(nowMs / 1000);
    const rows = m.list();
    for (const kind of ['x509', 'jwt'] as const) {
      assert.equal(rows.filter((a) => a.kind === kind && a.status === 'active').length, 1, `one active ${kind}`);
    }
    const bundle = (await ds.getBundle())!;
    assert.deepEqual(bundle, m.bundle());
    const bundleIds = new Set([...bundle.x509Authorities.map((c) => readCertificate(c).skid!), ...bundle.jwtAuthorities.map((k) => k.kid)]);
    const published = rows.filter((a) => ['prepared', 'active', 'old', 'tainted'].includes(a.status) && a.notAfter >= nowSec);
    assert.deepEqual([...bundleIds].sort(), published.map((a) => a.id).sort(), 'the bundle holds exactly the published authorities');
    const keyFiles = fs.readdirSync(path.join(dir, 'keys')).sort();
    const referenced = new Set(rows.map((a) => `${a.keyId}.pem`));
    assert.ok(keyFiles.every((f) => referenced.has(f)), 'no orphan key files');
    for (const a of rows.filter((x) => x.status === 'prepared' || x.status === 'active')) {
      assert.ok(keyFiles.includes(`${a.keyId}.pem`), `key of ${a.status} ${a.id}`);
    }
    // Every acknowledged SVID that is still valid chains to an authority in the bundle, unless an
    // operator revoked that authority on purpose.
    const revoked = new Set(rows.filter((a) => a.status === 'revoked').map((a) => a.id));
    const live = await ds.listSvids({ agentId: 'crash', notExpiredAt: nowSec - 1, pageSize: 10_000 });
    for (const svid of live.items) {
      assert.ok(bundleIds.has(svid.authorityId) || revoked.has(svid.authorityId), `SVID ${svid.serial} of ${svid.authorityId}`);
    }
  } finally {
    await ds.close();
  }
}

if (process.env[CHILD_ENV]) {
  await runChild();
} else {
  describe('server/ca crash safety (kill -9)', function () {
    this.timeout(60_000);
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-ca-crash-'));
    });
    after(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('a server killed after a random write during rotation and operator actions restarts consistent', async () => {
      const t0 = Math.floor(Date.now() / 1000) * 1000;
      let step = 0;
      const crashPoints: number[] = [];
      for (let round = 0; round < 5; round++) {
        // Round 0 dies inside the very first start(); later rounds anywhere in the next ~20 steps.
        const writes = round === 0 ? 1 + Math.floor(Math.random() * 6) : 1 + Math.floor(Math.random() * 120);
        crashPoints.push(writes);
        step = await runUntilKilled(dir, t0, step, writes);
        step += 1; // a step the child reached without reporting it yet used at most this time
        await checkConsistent(dir, t0 + step * 1000).catch((err: unknown) => {
          throw new Error(`after crash points ${crashPoints.join(', ')}: ${(err as Error).message}`, { cause: err });
        });
      }
    });
  });
}
