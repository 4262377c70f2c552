import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { AgentSvidRotator, type AgentStopReason } from '../../../src/agent/rotation/agent-svid-rotator.js';
import { ManualClock } from '../../../src/agent/rotation/clock.js';
import { rotationTimeMs } from '../../../src/agent/rotation/rotation-time.js';
import { openAgentStore, type AgentStore, type StoredAgentSvid } from '../../../src/agent/storage/agent-store.js';
import { encodeSpiffeBundle } from '../../../src/common/bundle-json.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { concatDer } from '../../../src/common/x509/chain.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { verifyChallengeResponse } from '../../../src/common/x509pop-challenge.js';
import { AGENT_ID, createTestPki, eventually, NodeApiDouble, TD } from '../client/node-api-double.js';

const X509POP_ID = `spiffe://${TD}/emblem/agent/x509pop/node-1`;

describe('agent SVID rotator (real gRPC)', () => {
  const pki = createTestPki();
  let dir: string;
  let store: AgentStore;
  let double: NodeApiDouble | undefined;
  let client: ServerClient | undefined;
  let rotator: AgentSvidRotator | undefined;
  let clock: ManualClock;
  let stops: { reason: AgentStopReason; message: string }[];
  let renewed: StoredAgentSvid[];
  /** RenewAgent behaviour and what it saw: serials of the client certificates. */
  let renewMode: 'ok' | 'banned' | 'down';
  let renewSerials: string[];

  const renewHandler = ((call: grpc.ServerUnaryCall<{ csr: Buffer }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
    const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
    if (raw) renewSerials.push(readCertificate(raw).serial);
    if (renewMode === 'banned') return cb({ code: grpc.status.PERMISSION_DENIED, details: 'agent is banned' });
    if (renewMode === 'down') return cb({ code: grpc.status.UNAVAILABLE, details: 'datastore unavailable' });
    cb(null, { svid_chain: concatDer(pki.mint(AGENT_ID, parseCsr(call.request.csr).publicKey, 3600)) });
  }) as grpc.UntypedHandleCall;

  const attestHandler = ((call: grpc.ServerDuplexStream<{ params?: { x509pop: { cert_chain: Buffer[] }; csr: Buffer }; challenge_response?: Buffer }, unknown>) => {
    call.once('data', (first) => {
      const leaf = new X509Certificate(first.params!.x509pop.cert_chain[0]!);
      const challenge = randomBytes(32);
      call.write({ challenge });
      call.once('data', (answer) => {
        if (!verifyChallengeResponse(leaf.publicKey, challenge, answer.challenge_response!)) {
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'bad proof' });
          return;
        }
        const chain = pki.mint(X509POP_ID, parseCsr(first.params!.csr).publicKey, 3600);
        const bundle = { ...pki.bundle, sequence: 9 };
        call.write({ result: { agent_id: X509POP_ID, svid_chain: concatDer(chain), bundle: Buffer.from(encodeSpiffeBundle(bundle)) } });
        call.end();
      });
    });
  }) as grpc.UntypedHandleCall;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-rotator-'));
    store = await openAgentStore({ dataDir: dir, trustDomain: TD });
    clock = new ManualClock(Date.now());
    stops = [];
    renewed = [];
    renewMode = 'ok';
    renewSerials = [];
  });
  afterEach(async () => {
    rotator?.stop();
    client?.close();
    await double?.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function setup(svid: StoredAgentSvid, opts: { requireClientCert?: boolean; attestor?: ConstructorParameters<typeof AgentSvidRotator>[0]['attestor'] } = {}) {
    double = await NodeApiDouble.start({ pki, requireClientCert: opts.requireClientCert ?? true, handlers: { RenewAgent: renewHandler, AttestAgent: attestHandler } });
    client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer] });
    client.setAgentSvid({ chain: svid.chain, privateKey: svid.privateKeyPkcs8 });
    rotator = new AgentSvidRotator({
      transport: client,
      store,
      clock,
      random: () => 0.5,
      retry: { initialMs: 1000, maxMs: 8000 },
      onRenewed: (s) => renewed.push(s),
      onTerminated: (reason, message) => stops.push({ reason, message }),
      ...(opts.attestor ? { attestor: opts.attestor } : {}),
    });
    rotator.start(svid);
    return rotator;
  }

  function joinTokenSvid(ttl = 3600, nowMs = Date.now()): StoredAgentSvid {
    const id = pki.identity(AGENT_ID, ttl, nowMs);
    return { agentId: AGENT_ID, attestationType: 'join_token', chain: id.chain, privateKeyPkcs8: id.privateKeyPkcs8 };
  }

  it('renews a join-token agent at half-life over mTLS, persists, and switches the channel', async () => {
    const svid = joinTokenSvid();
    const r = await setup(svid);
    const info = readCertificate(svid.chain[0]!);
    const due = r.nextAttemptAt()!;
    assert.equal(due, rotationTimeMs(info.notBefore, info.notAfter, () => 0.5));
    let channelChanges = 0;
    client!.onChannelChange(() => channelChanges++);

    clock.set(due);
    await eventually(() => renewed.length === 1);
    assert.deepEqual(renewSerials, [info.serial], 'renewal is authenticated with the current SVID');
    const next = renewed[0]!;
    assert.equal(next.agentId, AGENT_ID);
    assert.ok(!next.privateKeyPkcs8.equals(svid.privateKeyPkcs8), 'a fresh key');
    assert.equal(channelChanges, 1);
    const stored = await store.load();
    assert.ok(stored.agentSvid?.chain[0]!.equals(next.chain[0]!));
    const nextInfo = readCertificate(next.chain[0]!);
    assert.equal(r.nextAttemptAt(), rotationTimeMs(nextInfo.notBefore, nextInfo.notAfter, () => 0.5), 'the new SVID is scheduled');

    assert.equal(await r.renewNow(), true);
    assert.equal(renewSerials[1], readCertificate(next.chain[0]!).serial, 'the next call presents the new SVID');
  });

  it('stops when the server says the agent is banned', async () => {
    renewMode = 'banned';
    const r = await setup(joinTokenSvid());
    assert.equal(await r.renewNow(), false);
    assert.deepEqual(stops.map((s) => s.reason), ['banned']);
    assert.equal(r.nextAttemptAt(), undefined);
  });

  it('retries with backoff, never later than the expiry', async () => {
    renewMode = 'down';
    const svid = joinTokenSvid();
    const r = await setup(svid);
    const now = clock.now();
    assert.equal(await r.renewNow(), false);
    assert.equal(r.nextAttemptAt(), now + 1000 * 0.75, 'attempt 0: base 1000 ms, equal jitter at 0.5');
    assert.equal(stops.length, 0);
    const notAfterMs = readCertificate(svid.chain[0]!).notAfter * 1000;
    clock.set(notAfterMs - 100);
    await eventually(() => renewSerials.length >= 2);
    await new Promise((res) => setTimeout(res, 20));
    assert.ok(r.nextAttemptAt()! <= notAfterMs);
  });

  it('ends a join-token agent whose SVID expired, without calling the server', async () => {
    const r = await setup(joinTokenSvid(60, Date.now() - 3600_000));
    assert.equal(await r.renewNow(), false);
    assert.equal(stops[0]?.reason, 'svid_expired');
    assert.match(stops[0]!.message, /cannot re-attest/);
    assert.deepEqual(renewSerials, []);
  });

  it('re-attests an x509pop agent (also after expiry) and takes the bundle that comes with it', async () => {
    const node = pki.identity(`spiffe://${TD}/node/n1`);
    const old = pki.identity(X509POP_ID, 60, Date.now() - 3600_000);
    const svid: StoredAgentSvid = { agentId: X509POP_ID, attestationType: 'x509pop', chain: old.chain, privateKeyPkcs8: old.privateKeyPkcs8 };
    let reads = 0;
    const r = await setup(svid, {
      requireClientCert: false,
      attestor: () => {
        reads++;
        return { x509pop: { certChain: node.chain, privateKey: node.privateKey } };
      },
    });
    assert.equal(await r.renewNow(), true);
    assert.equal(reads, 1, 'the attestor is read afresh');
    assert.equal(renewed[0]!.agentId, X509POP_ID);
    assert.equal(renewed[0]!.attestationType, 'x509pop');
    const stored = await store.load();
    assert.equal(stored.bundle?.sequence, 9);
    assert.ok(stored.agentSvid?.chain[0]!.equals(renewed[0]!.chain[0]!));
    assert.equal(stops.length, 0);
  });
});
