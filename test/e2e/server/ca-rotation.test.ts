// CA rotation with a 1-minute CA TTL: through prepare and activate (driven through the admin API,
// then again during a short real-time run with continuous issuance), every SVID issued so far that
// is still valid verifies against the bundle GetBundle serves at that moment, and agents hear of a
// new authority before anything is signed with it.
import assert from 'node:assert/strict';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { decodeSpiffeBundle } from '../../../src/common/bundle-json.js';
import { splitDerCertificates } from '../../../src/common/x509/chain.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import {
  attestWithJoinToken,
  fetchBundle,
  recordSync,
  startTestServer,
  type SyncRecorder,
  type TestAgent,
  type TestServer,
} from '../../helpers/server-harness.js';

interface Issued {
  label: string;
  chain: Buffer[];
  notAfter: number;
  authorityId: string;
}

interface AuthorityMsg {
  id: string;
  kind: string;
  status: string;
}

describe('e2e: CA rotation keeps every issued SVID valid', function () {
  this.timeout(30_000);
  let server: TestServer;
  let agent: TestAgent;
  let sync: SyncRecorder;
  let entryId: string;
  const issued: Issued[] = [];
  let checks = 0;

  /** Every issued SVID still within its validity verifies against the bundle served right now. */
  async function checkAllValid(when: string): Promise<void> {
    const bundle = await fetchBundle(server);
    const now = Date.now();
    for (const svid of issued) {
      if (svid.notAfter * 1000 <= now) continue;
      try {
        verifyX509SvidChain(svid.chain, (td) => (td === server.trustDomain ? bundle.x509Authorities : undefined), now);
      } catch (err) {
        assert.fail(`${when}: ${svid.label} (authority ${svid.authorityId}) does not verify against bundle #${bundle.sequence}: ${(err as Error).message}`);
      }
      checks++;
    }
  }

  async function issue(label: string): Promise<Issued> {
    const [r] = await agent.client.batchNewX509Svid([{ entry_id: entryId, csr: createCsr(generateKeyPair()) }]);
    assert.equal(r!.status?.code, 0, r!.status?.message);
    const svid = { label, chain: splitDerCertificates(r!.svid_chain), notAfter: r!.expires_at, authorityId: r!.authority_id };
    issued.push(svid);
    return svid;
  }

  const authorities = async (kind: string) =>
    (await server.admin.call<{ authorities: AuthorityMsg[] }>('ListAuthorities')).authorities.filter((a) => a.kind === kind);
  const activeId = async (kind: string) => (await authorities(kind)).find((a) => a.status === 'active')!.id;

  before(async () => {
    server = await startTestServer({ caTtl: 60, x509SvidTtl: 10, agentSvidTtl: 60, rotationInterval: 1 });
    agent = await attestWithJoinToken(server);
    issued.push({ label: 'agent SVID', chain: agent.chain, notAfter: readCertificate(agent.chain[0]!).notAfter, authorityId: '' });
    const entry = await server.admin.call<{ id: string }>('CreateEntry', {
      spiffe_id: `spiffe://${server.trustDomain}/rotating/workload`,
      parent_id: agent.id,
      selectors: [{ type: 'unix', value: 'uid:1' }],
    });
    entryId = entry.id;
    sync = recordSync(agent.client.syncEntries({ since_revision: 0, known_entries: [] }));
    await sync.waitFor((u) => u.full);
  });

  after(async () => {
    sync?.cancel();
    agent?.close();
    await server?.stop();
  });

  it('prepare publishes the next CA to agents before use; activate switches signing; old SVIDs stay valid', async () => {
    const first = await activeId('x509');
    const w1 = await issue('w1 (first CA)');
    assert.equal(w1.authorityId, first);
    // The CA TTL caps every SVID: nothing outlives its signing authority.
    assert.ok(w1.notAfter - Date.now() / 1000 <= 11);
    await checkAllValid('start');

    const seen = sync.updates.length;
    const prepared = await server.admin.call<AuthorityMsg>('PrepareAuthority', { kind: 'x509' });
    assert.equal(prepared.status, 'prepared');
    const published = await fetchBundle(server);
    assert.equal(published.x509Authorities.length, 2, 'the prepared CA is in the bundle at once');
    const pushed = await sync.waitFor((u) => u.bundle.length > 0 && decodeSpiffeBundle(server.trustDomain, u.bundle).x509Authorities.length === 2, 2000, seen);
    assert.equal(decodeSpiffeBundle(server.trustDomain, pushed.bundle).sequence, published.sequence);
    const w2 = await issue('w2 (after prepare)');
    assert.equal(w2.authorityId, first, 'a prepared CA does not sign yet');
    await checkAllValid('after prepare');

    const activated = await server.admin.call<AuthorityMsg>('ActivateAuthority', { id: prepared.id });
    assert.equal(activated.status, 'active');
    const w3 = await issue('w3 (after activate)');
    assert.equal(w3.authorityId, prepared.id);
    assert.equal((await authorities('x509')).find((a) => a.id === first)!.status, 'old');
    await checkAllValid('after activate');

    // The agent renews its own SVID under the new CA and keeps working with it.
    const keys = generateKeyPair();
    const renewed = await agent.client.renewAgent(createCsr(keys));
    agent.client.setAgentSvid({ chain: renewed, privateKey: keys.privateKey });
    issued.push({ label: 'renewed agent SVID', chain: renewed, notAfter: readCertificate(renewed[0]!).notAfter, authorityId: prepared.id });
    await issue('w4 (with the renewed agent SVID)');
    await checkAllValid('after agent renewal');
  });

  it('JWT key rotation: tokens signed before and after activation validate with the served bundle', async () => {
    const before = await agent.client.newJwtSvid(entryId, ['aud']);
    const prepared = await server.admin.call<AuthorityMsg>('PrepareAuthority', { kind: 'jwt' });
    await server.admin.call('ActivateAuthority', { id: prepared.id });
    const after = await agent.client.newJwtSvid(entryId, ['aud']);
    const bundle = await fetchBundle(server);
    const keys = (td: string) => (td === server.trustDomain ? bundle.jwtAuthorities : undefined);
    for (const token of [before.token, after.token]) {
      const v = await validateJwtSvid(token, 'aud', keys);
      assert.equal(v.spiffeId.uri, `spiffe://${server.trustDomain}/rotating/workload`);
    }
    const kid = (token: string) => (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
    assert.equal(kid(after.token), prepared.id);
    assert.notEqual(kid(before.token), prepared.id);
  });

  it('a real-time run: continuous issuance and bundle checks while another rotation happens', async () => {
    const stopAt = Date.now() + 3000;
    let rotated = false;
    let failure: unknown;
    const issuer = (async () => {
      let n = 0;
      while (Date.now() < stopAt && !failure) {
        await issue(`live-${n++}`);
        await new Promise((r) => setTimeout(r, 40));
      }
    })().catch((err: unknown) => (failure = err));
    const rotator = (async () => {
      await new Promise((r) => setTimeout(r, 800));
      const next = await server.admin.call<AuthorityMsg>('PrepareAuthority', { kind: 'x509' });
      await new Promise((r) => setTimeout(r, 800));
      await server.admin.call('ActivateAuthority', { id: next.id });
      rotated = true;
    })().catch((err: unknown) => (failure = err));
    while (Date.now() < stopAt && !failure) {
      await checkAllValid(`t-${Math.round((stopAt - Date.now()) / 100) / 10}s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await Promise.all([issuer, rotator]);
    if (failure) throw failure;
    assert.ok(rotated);
    await checkAllValid('end');
    const signers = new Set(issued.map((s) => s.authorityId).filter(Boolean));
    assert.equal(signers.size, 3, 'SVIDs of three CAs were checked');
    assert.ok(checks > 100, `${checks} chain checks`);
    // The rotation timer (every second) keeps all three CAs published: none has expired.
    assert.equal((await fetchBundle(server)).x509Authorities.length, 3);
  });
});
