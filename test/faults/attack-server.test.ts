// Attacks on a real server (in-process, real TLS and level store) that the e2e suites do not cover:
// a replayed x509pop challenge response, the attestation rate limit being per source address,
// renewals and re-attestations racing a ban, refusals of another agent's entries being audited,
// the Admin API on the TLS port (admin SVIDs only) and the admin socket's filesystem guard.
import assert from 'node:assert/strict';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { connectivityState } from '@grpc/grpc-js';
import { loggableId } from '../../src/common/spiffe-id.js';
import { createRateLimiter } from '../../src/server/attestation/rate-limit.js';
import { isEmblemError, type ErrorCode } from '../../src/common/errors.js';
import { signChallenge } from '../../src/common/x509pop-challenge.js';
import { splitDerCertificates } from '../../src/common/x509/chain.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createPopCa, createPopLeaf, foreignSvid, type PopCa } from '../helpers/pki.js';
import {
  attestTestAgent,
  attestWithJoinToken,
  fetchBundle,
  newJoinToken,
  newServerDir,
  rawNodeClient,
  startTestServer,
  type TestAgent,
  type TestServer,
} from '../helpers/server-harness.js';
import { adminOverTls, forwardFrom, manualAttest, tryJoinToken } from './lib/attack-server.js';
import { NOBODY, rawCall } from './lib/attack-procs.js';

async function rejects(p: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isEmblemError(err), String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

interface AgentMsg {
  id: string;
  svid_serial: string;
  banned: boolean;
}

const BAD_TOKEN = '0123456789abcdef0123456789abcdef';

describe('faults: attacks on the server', function () {
  this.timeout(30_000);
  let server: TestServer;
  let ca: PopCa;
  let anchors: Buffer[];
  const agents: TestAgent[] = [];

  const getAgent = (id: string) => server.admin.call<AgentMsg>('GetAgent', { id });
  const track = (a: TestAgent) => (agents.push(a), a);

  before(async () => {
    ca = await createPopCa('Faults Node CA');
    const dir = newServerDir();
    const caFile = join(dir, 'node-ca.pem');
    writeFileSync(caFile, ca.pem);
    server = await startTestServer({ x509popCaBundles: [caFile], attestationRateLimit: 1000 }, { dir, logLevel: 'info' });
    anchors = (await fetchBundle(server)).x509Authorities;
  });

  after(async () => {
    for (const a of agents) a.close();
    await server?.stop();
  });

  describe('x509pop challenge replay', () => {
    it('refuses a challenge response recorded from one attestation and replayed on a new stream; nonces never repeat', async () => {
      const leaf = await createPopLeaf(ca, 'replayed-node');
      // A genuine attestation, recorded.
      const genuine = await manualAttest(server, anchors);
      genuine.write({ params: { x509pop: { cert_chain: leaf.chain }, csr: createCsr(generateKeyPair()) } });
      const first = await genuine.next();
      assert.equal(first.challenge?.length, 32);
      const recorded = signChallenge(leaf.privateKey, first.challenge!);
      genuine.write({ challenge_response: recorded });
      const result = await genuine.next();
      assert.ok(result.result?.agent_id, 'the genuine attestation succeeds');
      genuine.close();
      const agentId = result.result!.agent_id;
      const serialBefore = (await getAgent(agentId)).svid_serial;

      // The attacker has the (public) certificate and the recorded response, not the key.
      const seen = new Set([first.challenge!.toString('hex')]);
      for (let i = 0; i < 5; i++) {
        const replay = await manualAttest(server, anchors);
        replay.write({ params: { x509pop: { cert_chain: leaf.chain }, csr: createCsr(generateKeyPair()) } });
        const fresh = await replay.next();
        assert.equal(fresh.challenge?.length, 32);
        assert.ok(!seen.has(fresh.challenge!.toString('hex')), 'the server never reuses a nonce');
        seen.add(fresh.challenge!.toString('hex'));
        replay.write({ challenge_response: recorded });
        const err = await replay.ended;
        replay.close();
        assert.ok(isEmblemError(err, 'permission_denied'), String(err));
        assert.match(err.message, /challenge response/);
      }

      // Sent ahead of the challenge, without waiting for it: still checked against the new nonce.
      const eager = await manualAttest(server, anchors);
      eager.write({ params: { x509pop: { cert_chain: leaf.chain }, csr: createCsr(generateKeyPair()) } });
      eager.write({ challenge_response: recorded });
      const eagerErr = await eager.ended;
      eager.close();
      assert.ok(isEmblemError(eagerErr, 'permission_denied'), String(eagerErr));

      assert.equal((await getAgent(agentId)).svid_serial, serialBefore, 'no refused attempt replaced the agent SVID');
      const refusals = server.logs.records().filter((r) => r['msg'] === 'agent attestation refused' && /challenge response/.test(String(r['reason'])));
      assert.equal(refusals.length, 6);
    });
  });

  describe('attestation rate limit', () => {
    it('is per source address, and never touches other calls from a throttled address', async () => {
      // 6 per minute: the refill (0.1 attempt per second) is negligible during the test.
      const limited = await startTestServer({ attestationRateLimit: 6 });
      const other = await forwardFrom('127.0.0.2', limited.address);
      try {
        const limitedAnchors = (await fetchBundle(limited)).x509Authorities;
        const agent = await attestWithJoinToken(limited); // 1 of 127.0.0.1's 6 attempts
        for (let i = 0; i < 5; i++) assert.equal(await tryJoinToken(limited, limited.address, limitedAnchors, BAD_TOKEN), 'permission_denied');
        assert.equal(await tryJoinToken(limited, limited.address, limitedAnchors, BAD_TOKEN), 'resource_exhausted');
        const { token } = await newJoinToken(limited);
        assert.equal(await tryJoinToken(limited, limited.address, limitedAnchors, token), 'resource_exhausted', 'even a valid token waits');

        // Another source is not affected: the same valid token attests from 127.0.0.2.
        assert.equal(await tryJoinToken(limited, other.address, limitedAnchors, token), 'ok');
        const refused = limited.logs.records().filter((r) => r['msg'] === 'agent attestation refused' && /too many/.test(String(r['reason'])));
        assert.equal(refused.length, 2);
        assert.ok(refused.every((r) => r['remote'] === '127.0.0.1'), 'refusals name the throttled source');

        // A throttled address keeps its other calls: the attested agent renews and mints.
        const renewed = await agent.client.renewAgent(createCsr(agent.keyPair));
        assert.ok(renewed.length > 0);
        agent.close();
      } finally {
        await other.close();
        await limited.stop();
      }
    });

    it('refills each source at its own pace (the limiter on a fake clock)', () => {
      let now = 1_000_000;
      const limiter = createRateLimiter(60, () => now);
      for (let i = 0; i < 60; i++) limiter.take('10.0.0.1');
      assert.throws(() => limiter.take('10.0.0.1'), (e: unknown) => isEmblemError(e, 'resource_exhausted'));
      limiter.take('10.0.0.2');
      now += 999;
      assert.throws(() => limiter.take('10.0.0.1'), (e: unknown) => isEmblemError(e, 'resource_exhausted'), 'not before a full second');
      now += 1;
      limiter.take('10.0.0.1');
      assert.throws(() => limiter.take('10.0.0.1'), (e: unknown) => isEmblemError(e, 'resource_exhausted'), 'one attempt per second comes back');
      now += 3_600_000;
      for (let i = 0; i < 60; i++) limiter.take('10.0.0.1');
      assert.throws(() => limiter.take('10.0.0.1'), (e: unknown) => isEmblemError(e, 'resource_exhausted'), 'the bucket never holds more than the limit');
    });
  });

  describe('bans', () => {
    it('a ban wins against renewals racing it: the record stays banned, the connection is cut, no SVID renews afterwards', async () => {
      for (let round = 0; round < 3; round++) {
        const agent = track(await attestWithJoinToken(server));
        const idle = rawNodeClient(server, anchors, { chain: agent.chain, privateKey: agent.keyPair.privateKey });
        try {
          await idle.unary('NewJWTSVID', { entry_id: 'none', audience: ['x'] }).catch(() => undefined);
          assert.equal(idle.stub.getChannel().getConnectivityState(false), connectivityState.READY);

          let stop = false;
          const renewals = Array.from({ length: 6 }, async () => {
            let last: unknown;
            while (!stop) {
              try {
                await agent.client.renewAgent(createCsr(agent.keyPair));
              } catch (err) {
                last = err;
                if (isEmblemError(err, 'permission_denied')) break;
              }
            }
            return last;
          });
          await new Promise((r) => setTimeout(r, 150));
          await server.admin.call('BanAgent', { id: agent.id });
          await new Promise((r) => setTimeout(r, 300));
          stop = true;
          await Promise.all(renewals);
          await new Promise((r) => setTimeout(r, 100));

          assert.equal((await getAgent(agent.id)).banned, true, `round ${round}: a renewal in flight undid the ban`);
          await rejects(agent.client.renewAgent(createCsr(agent.keyPair)), 'permission_denied', /banned/);
          assert.notEqual(idle.stub.getChannel().getConnectivityState(false), connectivityState.READY, 'the idle connection was cut');
        } finally {
          idle.close();
        }
      }
    });

    it('a ban wins against x509pop re-attestations racing it; the node can never attest again', async () => {
      const leaf = await createPopLeaf(ca, 'racing-node');
      const node = track(await attestTestAgent(server, { x509pop: { certChain: leaf.chain, privateKey: leaf.privateKey } }));
      let stop = false;
      const attest = async () => {
        const a = await attestTestAgent(server, { x509pop: { certChain: leaf.chain, privateKey: leaf.privateKey } });
        a.close();
      };
      const loops = Array.from({ length: 4 }, async () => {
        while (!stop) {
          try {
            await attest();
          } catch (err) {
            if (isEmblemError(err, 'permission_denied')) break;
          }
        }
      });
      await new Promise((r) => setTimeout(r, 200));
      await server.admin.call('BanAgent', { id: node.id });
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(loops);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await getAgent(node.id)).banned, true, 'a re-attestation in flight undid the ban');
      await rejects(attest(), 'permission_denied', /banned/);
    });

    it('an eviction is not undone by a renewal racing it', async () => {
      for (let round = 0; round < 3; round++) {
        const agent = track(await attestWithJoinToken(server));
        let stop = false;
        const renewals = Array.from({ length: 6 }, async () => {
          while (!stop) {
            try {
              await agent.client.renewAgent(createCsr(agent.keyPair));
            } catch (err) {
              if (isEmblemError(err, 'permission_denied')) break;
            }
          }
        });
        await new Promise((r) => setTimeout(r, 150));
        await server.admin.call('EvictAgent', { id: agent.id });
        await new Promise((r) => setTimeout(r, 300));
        stop = true;
        await Promise.all(renewals);
        await rejects(getAgent(agent.id), 'not_found', undefined);
      }
    });
  });

  describe('another agent\'s entries', () => {
    it('refuses them and audits each refusal with a warning naming the agent and the entry', async () => {
      const a = track(await attestWithJoinToken(server));
      const leaf = await createPopLeaf(ca, 'victim-node');
      const b = track(await attestTestAgent(server, { x509pop: { certChain: leaf.chain, privateKey: leaf.privateKey } }));
      const td = server.trustDomain;
      const entryB = await server.admin.call<{ id: string; spiffe_id: string }>('CreateEntry', {
        spiffe_id: `spiffe://${td}/victim/db`,
        parent_id: b.id,
        selectors: [{ type: 'unix', value: 'uid:5432' }],
      });
      const ledger = async () => (await server.admin.call<{ svids: unknown[] }>('ListSVIDs', { spiffe_id: entryB.spiffe_id })).svids.length;

      // a (join token) asks for b's entry; b (x509pop) asks for nothing of a's, but for a made-up one.
      const [x509] = await a.client.batchNewX509Svid([{ entry_id: entryB.id, csr: createCsr(generateKeyPair()) }]);
      assert.equal(x509!.status?.code, 7);
      await rejects(a.client.newJwtSvid(entryB.id, ['db']), 'permission_denied', /not authorised/);
      await rejects(b.client.newJwtSvid('made-up-entry', ['db']), 'permission_denied');
      assert.equal(await ledger(), 0, 'nothing was issued for the refused entry');

      const warnings = server.logs.records().filter((r) => r['level'] === 40 && /not authorised for this agent/.test(String(r['msg'])));
      const named = (agentId: string, entryId: string) => warnings.filter((w) => w['agentId'] === agentId && w['entryId'] === entryId);
      assert.equal(named(loggableId(a.id), entryB.id).length, 2, 'one warning per refusal (X.509 and JWT), naming agent a and the entry');
      assert.equal(named(b.id, 'made-up-entry').length, 1, 'an x509pop agent is named by its full ID');
      assert.ok(!server.logs.text().includes(a.id), 'the join token inside agent a\'s ID is not logged');
    });
  });

  describe('Admin API on the TLS port', () => {
    it('serves an admin SVID, refuses a non-admin one, an agent SVID, no certificate and a foreign one, and follows the entry', async () => {
      const td = server.trustDomain;
      const agent = track(await attestWithJoinToken(server));
      const mint = async (path: string, admin: boolean) => {
        const entry = await server.admin.call<{ id: string }>('CreateEntry', { spiffe_id: `spiffe://${td}/${path}`, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:0' }], admin });
        const keys = generateKeyPair();
        const [r] = await agent.client.batchNewX509Svid([{ entry_id: entry.id, csr: createCsr(keys) }]);
        assert.equal(r!.status?.code, 0, r!.status?.message);
        return { entryId: entry.id, identity: { chain: splitDerCertificates(r!.svid_chain), privateKey: keys.privateKey } };
      };
      const operator = await mint('ops/admin', true);
      const workload = await mint('ops/reader', false);
      const clients = {
        admin: adminOverTls(server, anchors, operator.identity),
        workload: adminOverTls(server, anchors, workload.identity),
        agent: adminOverTls(server, anchors, { chain: agent.chain, privateKey: agent.keyPair.privateKey }),
        anonymous: adminOverTls(server, anchors),
        foreign: adminOverTls(server, anchors, foreignSvid('other.test', '/ops/admin')),
      };
      try {
        const count = async () => (await server.admin.call<{ count: number }>('CountEntries', {})).count;
        const before = await count();
        const health = await clients.admin.call<{ ready: boolean }>('GetHealth');
        assert.equal(health.ready, true);
        const created = await clients.admin.call<{ id: string }>('CreateEntry', { spiffe_id: `spiffe://${td}/remote/created`, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:7' }] });
        assert.equal(await count(), before + 1);

        for (const [who, client, code] of [
          ['a non-admin SVID', clients.workload, 'permission_denied'],
          ['an agent SVID', clients.agent, 'permission_denied'],
          ['no certificate', clients.anonymous, 'unauthenticated'],
          ['a foreign trust domain SVID', clients.foreign, 'unauthenticated'],
        ] as const) {
          await rejects(client.call('ListAgents'), code, undefined).catch((e: Error) => assert.fail(`${who}: ${e.message}`));
          await rejects(client.call('DeleteEntry', { id: created.id }), code, undefined);
          await rejects(client.call('CreateJoinToken', { ttl: 60 }), code, undefined);
          await rejects(client.call('BanAgent', { id: agent.id }), code, undefined);
        }
        assert.equal(await count(), before + 1, 'refused callers changed nothing');
        assert.equal((await getAgent(agent.id)).banned, false);

        // Admin rights follow the entry: cleared, the same (still valid) SVID is refused.
        const adminEntry = await server.admin.call<Record<string, unknown>>('GetEntry', { id: operator.entryId });
        await server.admin.call('UpdateEntry', { ...adminEntry, admin: false });
        await rejects(clients.admin.call('GetHealth'), 'permission_denied', /not an admin/);
      } finally {
        for (const c of Object.values(clients)) c.close();
      }
    });
  });

  describe('admin socket', () => {
    it('refuses a local caller without filesystem access (uid 65534) while root is served', async () => {
      const adminDir = dirname(server.socket);
      assert.equal(statSync(adminDir).mode & 0o777, 0o700);
      assert.equal(statSync(server.socket).mode & 0o777, 0o600);
      // Let anyone walk down to the admin directory, so that only the server's own modes stand guard.
      chmodSync(server.dir, 0o755);
      const health = '/emblem.server.v1.Admin/GetHealth';
      const asNobody = await rawCall({ socketPath: server.socket, path: health, header: false }, NOBODY);
      assert.deepEqual(asNobody, { error: 'EACCES' }, 'the 0700 directory stops uid 65534');
      // Even with the directory opened up, the 0600 socket itself refuses.
      chmodSync(adminDir, 0o755);
      try {
        assert.deepEqual(await rawCall({ socketPath: server.socket, path: health, header: false }, NOBODY), { error: 'EACCES' });
      } finally {
        chmodSync(adminDir, 0o700);
      }
      const asRoot = await rawCall({ socketPath: server.socket, path: health, header: false });
      assert.equal(asRoot.status, 0, JSON.stringify(asRoot));
    });
  });
});
