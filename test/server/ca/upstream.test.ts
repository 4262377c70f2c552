import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import { certificatesToPem, parsePemCertificates, parsePemPrivateKey, privateKeyToPem } from '../../../src/common/pem.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { createIntermediateCa, createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { createAuthorityManager, type UpstreamConfig } from '../../../src/server/ca/authority-manager.js';
import { diskKeyManager, memoryKeyManager } from '../../../src/server/ca/key-manager.js';
import { createSvidSigner } from '../../../src/server/ca/svid-signer.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { Datastore } from '../../../src/server/datastore/types.js';

const TD = 'example.org';

describe('server/ca with an upstream CA', () => {
  let tmp: string;
  let ds: Datastore | undefined;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-upstream-'));
  });
  afterEach(async () => {
    await ds?.close();
    ds = undefined;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Writes a root CA (and optionally an intermediate under it) as PEM files, as an operator would. */
  function writeUpstream(opts: { rootTtl: number; nowMs?: number; withIntermediate?: boolean }): { root: string; files: { cert: string; key: string; chain?: string } } {
    const rootKeys = generateKeyPair();
    const rootDer = createSelfSignedCa({ trustDomain: 'upstream.test', keyPair: rootKeys, ttlSeconds: opts.rootTtl, now: opts.nowMs, subject: { organization: 'Upstream Root' } });
    const root = path.join(tmp, 'root.pem');
    fs.writeFileSync(root, certificatesToPem([rootDer]));
    if (!opts.withIntermediate) {
      const key = path.join(tmp, 'root-key.pem');
      fs.writeFileSync(key, privateKeyToPem(rootKeys.privateKey), { mode: 0o600 });
      return { root, files: { cert: root, key } };
    }
    const interKeys = generateKeyPair();
    const interDer = createIntermediateCa({
      trustDomain: 'upstream.test',
      publicKey: interKeys.publicKey,
      upstreamCertificate: rootDer,
      upstreamPrivateKey: rootKeys.privateKey,
      ttlSeconds: opts.rootTtl,
      now: opts.nowMs,
      subject: { organization: 'Upstream Intermediate' },
    });
    const cert = path.join(tmp, 'upstream.pem');
    const key = path.join(tmp, 'upstream-key.pem');
    fs.writeFileSync(cert, certificatesToPem([interDer]));
    fs.writeFileSync(key, privateKeyToPem(interKeys.privateKey), { mode: 0o600 });
    return { root, files: { cert, key, chain: root } };
  }

  function loadUpstream(files: { cert: string; key: string; chain?: string }): UpstreamConfig {
    return {
      certificate: parsePemCertificates(fs.readFileSync(files.cert, 'utf8'))[0]!,
      chain: files.chain ? parsePemCertificates(fs.readFileSync(files.chain, 'utf8')) : [],
      privateKey: parsePemPrivateKey(fs.readFileSync(files.key, 'utf8')),
    };
  }

  function opensslVerify(rootFile: string, intermediates: Buffer[], leaf: Buffer): string {
    const inter = path.join(tmp, 'untrusted.pem');
    const leafFile = path.join(tmp, 'leaf.pem');
    fs.writeFileSync(inter, certificatesToPem(intermediates));
    fs.writeFileSync(leafFile, certificatesToPem([leaf]));
    return execFileSync('openssl', ['verify', '-CAfile', rootFile, '-untrusted', inter, leafFile], { encoding: 'utf8' });
  }

  it('signs with an intermediate under the upstream root; the bundle holds the root; openssl verifies the chain', async () => {
    const { root, files } = writeUpstream({ rootTtl: 3600 });
    const upstream = loadUpstream(files);
    ds = await openDatastore({ kind: 'level', dataDir: path.join(tmp, 'data') });
    const m = createAuthorityManager({ datastore: ds, keyManager: diskKeyManager(path.join(tmp, 'keys')), trustDomain: TD, upstream, logger: silentLogger() });
    await m.start();

    const rootDer = upstream.certificate;
    const { authority } = m.activeX509();
    const inter = readCertificate(authority.certificate!);
    assert.equal(inter.isCa, true);
    assert.deepEqual(inter.uris, [`spiffe://${TD}`]);
    assert.equal(inter.akid, readCertificate(rootDer).skid);
    assert.equal(authority.notAfter, readCertificate(rootDer).notAfter, 'a 24 h CA is capped at the 1 h upstream');
    assert.deepEqual(authority.upstreamChain, [rootDer]);
    assert.deepEqual(m.bundle().x509Authorities, [rootDer]);

    const signer = createSvidSigner({ authorities: m, datastore: ds, trustDomain: TD, logger: silentLogger() });
    const [svid] = await signer.signX509Batch([
      { spiffeId: `spiffe://${TD}/web`, publicKey: generateKeyPair().publicKey, ttlSeconds: 0, entryId: 'e1', agentId: 'a1', kind: 'x509' },
    ]);
    assert.equal(svid!.chain.length, 2, 'leaf + our intermediate; the root is in the bundle');
    assert.deepEqual(svid!.chain[1], authority.certificate);
    assert.match(opensslVerify(root, svid!.chain.slice(1), svid!.chain[0]!), /: OK/);
    verifyX509SvidChain(svid!.chain, (td) => (td === TD ? m.bundle().x509Authorities : undefined));
  });

  it('with an upstream intermediate, SVIDs carry both intermediates and verify against the root alone', async () => {
    const { root, files } = writeUpstream({ rootTtl: 3600, withIntermediate: true });
    const upstream = loadUpstream(files);
    ds = await openDatastore({ kind: 'level', dataDir: path.join(tmp, 'data') });
    const m = createAuthorityManager({ datastore: ds, keyManager: memoryKeyManager(), trustDomain: TD, upstream, logger: silentLogger() });
    await m.start();
    const rootDer = upstream.chain![0]!;
    assert.deepEqual(m.bundle().x509Authorities, [rootDer]);
    assert.deepEqual(m.activeX509().authority.upstreamChain, [upstream.certificate, rootDer]);

    const signer = createSvidSigner({ authorities: m, datastore: ds, trustDomain: TD, logger: silentLogger() });
    const svid = await signer.signServerSvid({ publicKey: generateKeyPair().publicKey });
    assert.deepEqual(readCertificate(svid.chain[0]!).uris, [`spiffe://${TD}/emblem/server`]);
    assert.deepEqual(readCertificate(svid.chain[0]!).dnsNames, []);
    assert.deepEqual(svid.chain.slice(1), [m.activeX509().authority.certificate, upstream.certificate]);
    assert.match(opensslVerify(root, svid.chain.slice(1), svid.chain[0]!), /: OK/);
  });

  it('refuses an upstream whose key does not match or whose chain does not end at a root', () => {
    const { files } = writeUpstream({ rootTtl: 3600, withIntermediate: true });
    const upstream = loadUpstream(files);
    const base = { datastore: {} as Datastore, keyManager: memoryKeyManager(), trustDomain: TD, logger: silentLogger() };
    const wrongKey = { ...upstream, privateKey: generateKeyPair().privateKey };
    assert.throws(() => createAuthorityManager({ ...base, upstream: wrongKey }), (err) => isEmblemError(err, 'invalid_argument'));
    assert.throws(() => createAuthorityManager({ ...base, upstream: { ...upstream, chain: [] } }), (err) => isEmblemError(err, 'invalid_argument'));
  });

  it('switching to an upstream retires the self-signed CA but keeps it trusted until it expires', async () => {
    ds = await openDatastore({ kind: 'level', dataDir: path.join(tmp, 'data') });
    const keyManager = memoryKeyManager();
    const first = createAuthorityManager({ datastore: ds, keyManager, trustDomain: TD, logger: silentLogger() });
    await first.start();
    const selfSigned = first.activeX509().authority;

    const upstream = loadUpstream(writeUpstream({ rootTtl: 3600 }).files);
    const second = createAuthorityManager({ datastore: ds, keyManager, trustDomain: TD, upstream, logger: silentLogger() });
    await second.start();
    assert.deepEqual(second.activeX509().authority.upstreamChain, [upstream.certificate]);
    assert.equal(second.list().find((a) => a.id === selfSigned.id)?.status, 'old');
    const bundle = second.bundle().x509Authorities;
    assert.equal(bundle.length, 2);
    assert.ok(bundle.some((c) => c.equals(selfSigned.certificate!)));
    assert.ok(bundle.some((c) => c.equals(upstream.certificate)));
    assert.equal(second.activeJwt().kid, first.activeJwt().kid, 'the JWT key is not affected');
  });

  it('never prepares an intermediate that would not outlive the active one when the upstream is ending', async () => {
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    let now = t0;
    const upstream = loadUpstream(writeUpstream({ rootTtl: 100, nowMs: t0 }).files);
    const rootNotAfter = readCertificate(upstream.certificate).notAfter;
    ds = await openDatastore({ kind: 'level', dataDir: path.join(tmp, 'data') });
    const m = createAuthorityManager({
      datastore: ds, keyManager: memoryKeyManager(), trustDomain: TD, upstream, caTtlSeconds: 60, logger: silentLogger(), now: () => now,
    });
    await m.start();
    const created: string[] = [];
    for (let s = 0; s <= 99; s++) {
      now = t0 + s * 1000;
      await m.rotate();
      for (const a of m.list()) if (a.kind === 'x509' && !created.includes(a.id)) created.push(a.id);
    }
    const notAfters = created.map((id) => m.list().find((a) => a.id === id)?.notAfter).filter((x) => x !== undefined);
    assert.ok(notAfters.every((n) => n <= rootNotAfter), 'no CA outlives the upstream');
    // CAs at 0 s (ends 60), 30 s (ends 90) and 60 s (ends 100 = upstream end); after that no
    // successor could outlive the active one, so none is made.
    assert.equal(created.length, 3);
    assert.equal(m.activeX509().authority.notAfter, rootNotAfter);
  });
});
