// Who may sign what, against a real server: an agent signs its own entries (identity from the entry,
// never the CSR), is refused another agent's, reaches entries through node aliases, mints JWT-SVIDs
// only for its entries; callers without a valid agent SVID of our trust domain are refused.
import assert from 'node:assert/strict';
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { SyncEntriesUpdateMsg } from '../../../src/agent/client/messages.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isEmblemError, type ErrorCode } from '../../../src/common/errors.js';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { serverId } from '../../../src/common/spiffe-id.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { splitDerCertificates } from '../../../src/common/x509/chain.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { createPopCa, createPopLeaf, csrAskingFor, foreignSvid } from '../../helpers/pki.js';
import {
  assertNoSecretsLogged,
  attestTestAgent,
  attestWithJoinToken,
  fetchBundle,
  joinTokenOf,
  newServerDir,
  rawNodeClient,
  recordSync,
  startTestServer,
  type TestAgent,
  type TestServer,
} from '../../helpers/server-harness.js';

interface EntryMsg {
  id: string;
  spiffe_id: string;
  revision: number;
}

interface SvidRow {
  kind: string;
  spiffe_id: string;
  entry_id: string;
  agent_id: string;
  serial: string;
}

async function rejects(p: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isEmblemError(err), String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

describe('e2e: authorization on the Node API', function () {
  this.timeout(20_000);
  let server: TestServer;
  let a: TestAgent;
  let b: TestAgent;
  let web: TestAgent;
  let entryA: EntryMsg;
  let entryB: EntryMsg;
  let entryViaAlias: EntryMsg;
  const secrets: string[] = [];

  const createEntry = (fields: Record<string, unknown>) => server.admin.call<EntryMsg>('CreateEntry', fields);
  const ledger = async (spiffeId: string) => (await server.admin.call<{ svids: SvidRow[] }>('ListSVIDs', { spiffe_id: spiffeId })).svids;

  before(async () => {
    const ca = await createPopCa('Authz Node CA');
    const dir = newServerDir();
    const caFile = join(dir, 'node-ca.pem');
    writeFileSync(caFile, ca.pem);
    server = await startTestServer({ x509popCaBundles: [caFile] }, { dir });
    const td = server.trustDomain;
    a = await attestWithJoinToken(server);
    b = await attestWithJoinToken(server);
    secrets.push(joinTokenOf(a.id), joinTokenOf(b.id));
    const webLeaf = await createPopLeaf(ca, 'web-1');
    web = await attestTestAgent(server, { x509pop: { certChain: webLeaf.chain, privateKey: webLeaf.privateKey } });

    entryA = await createEntry({ spiffe_id: `spiffe://${td}/svc/a`, parent_id: a.id, selectors: [{ type: 'unix', value: 'uid:1001' }], dns_names: ['a.svc.example', 'alt.a.example'], x509_svid_ttl: 120 });
    entryB = await createEntry({ spiffe_id: `spiffe://${td}/svc/b`, parent_id: b.id, selectors: [{ type: 'unix', value: 'uid:1002' }] });
    // Node alias: every agent attested with a certificate whose CN is web-1.
    const alias = await createEntry({ spiffe_id: `spiffe://${td}/nodes/web`, parent_id: serverId(td), selectors: [{ type: 'x509pop', value: 'subject:cn:web-1' }] });
    entryViaAlias = await createEntry({ spiffe_id: `spiffe://${td}/svc/web`, parent_id: alias.spiffe_id, selectors: [{ type: 'unix', value: 'uid:33' }] });
  });

  after(async () => {
    for (const agent of [a, b, web]) agent?.close();
    await server?.stop();
  });

  it('signs an agent its own entry: SPIFFE ID, DNS names and TTL come from the entry, not the CSR', async () => {
    const csr = await csrAskingFor(`spiffe://${server.trustDomain}/admin-please`, ['evil.example']);
    const before = Math.floor(Date.now() / 1000);
    const [result] = await a.client.batchNewX509Svid([{ entry_id: entryA.id, csr: csr.der }]);
    assert.equal(result!.status?.code, 0, result!.status?.message);
    const chain = splitDerCertificates(result!.svid_chain);
    const bundle = await fetchBundle(server);
    const verified = verifyX509SvidChain(chain, (td) => (td === server.trustDomain ? bundle.x509Authorities : undefined));
    assert.equal(verified.spiffeId.uri, entryA.spiffe_id);
    const info = readCertificate(chain[0]!);
    assert.deepEqual(info.uris, [entryA.spiffe_id]);
    assert.deepEqual([...info.dnsNames].sort(), ['a.svc.example', 'alt.a.example']);
    assert.ok(info.notAfter - before >= 118 && info.notAfter - before <= 122, `TTL ${info.notAfter - before} s, entry says 120 s`);
    assert.equal(result!.expires_at, info.notAfter);
    assert.ok(verified.leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(csr.publicKey.export({ type: 'spki', format: 'der' })), 'SVID certifies the CSR key');
    assert.equal(result!.authority_id.length > 0, true);

    const rows = await ledger(entryA.spiffe_id);
    assert.equal(rows.length, 1);
    const { kind, spiffe_id, entry_id, agent_id } = rows[0]!;
    assert.deepEqual({ kind, spiffe_id, entry_id, agent_id }, { kind: 'x509', spiffe_id: entryA.spiffe_id, entry_id: entryA.id, agent_id: a.id });
    assert.equal(rows[0]!.serial.replace(/^0+/, ''), info.serial.toLowerCase().replace(/^0+/, ''));
  });

  it("refuses another agent's entry per item, logs a warning and records nothing", async () => {
    const results = await a.client.batchNewX509Svid([
      { entry_id: entryB.id, csr: createCsr(generateKeyPair()) },
      { entry_id: entryA.id, csr: createCsr(generateKeyPair()) },
      { entry_id: 'no-such-entry', csr: createCsr(generateKeyPair()) },
    ]);
    assert.equal(results[0]!.status?.code, 7 /* PERMISSION_DENIED */);
    assert.equal(results[0]!.svid_chain.length, 0);
    assert.equal(results[1]!.status?.code, 0, 'the authorised item of the same batch is signed');
    assert.ok(results[1]!.svid_chain.length > 0);
    assert.equal(results[2]!.status?.code, 7);
    assert.deepEqual(await ledger(entryB.spiffe_id), []);
    const warning = server.logs.records().find((r) => r['msg'] === 'refused to sign: entry is not authorised for this agent' && r['entryId'] === entryB.id);
    assert.ok(warning, 'a warning names the refused entry');
    assert.equal(warning['level'], 40);
  });

  it('authorises entries through a node alias matching x509pop selectors', async () => {
    const [ok] = await web.client.batchNewX509Svid([{ entry_id: entryViaAlias.id, csr: createCsr(generateKeyPair()) }]);
    assert.equal(ok!.status?.code, 0, ok!.status?.message);
    assert.deepEqual(readCertificate(splitDerCertificates(ok!.svid_chain)[0]!).uris, [entryViaAlias.spiffe_id]);
    const [refused] = await a.client.batchNewX509Svid([{ entry_id: entryViaAlias.id, csr: createCsr(generateKeyPair()) }]);
    assert.equal(refused!.status?.code, 7, 'a join-token agent does not match the alias');
  });

  it('mints JWT-SVIDs that validate with the bundle keys, only for authorised entries', async () => {
    const jwt = await a.client.newJwtSvid(entryA.id, ['billing']);
    secrets.push(jwt.token);
    const bundle = await fetchBundle(server);
    const validated = await validateJwtSvid(jwt.token, 'billing', (td) => (td === server.trustDomain ? bundle.jwtAuthorities : undefined));
    assert.equal(validated.spiffeId.uri, entryA.spiffe_id);
    assert.equal(validated.expiresAt, jwt.expiresAt);
    await assert.rejects(validateJwtSvid(jwt.token, 'other-audience', () => bundle.jwtAuthorities));
    assert.ok((await ledger(entryA.spiffe_id)).some((r) => r.kind === 'jwt' && r.agent_id === a.id));

    await rejects(a.client.newJwtSvid(entryB.id, ['billing']), 'permission_denied', /not authorised/);
    await rejects(a.client.newJwtSvid(entryA.id, []), 'invalid_argument');
    const jwtWarning = server.logs.records().find((r) => r['msg'] === 'refused JWT-SVID: entry is not authorised for this agent');
    assert.ok(jwtWarning);
  });

  it('refuses calls without a client certificate or with one of another trust domain (UNAUTHENTICATED)', async () => {
    const bundle = await fetchBundle(server);
    const anonymous = rawNodeClient(server, bundle.x509Authorities);
    const foreign = foreignSvid('other.test');
    const stranger = rawNodeClient(server, bundle.x509Authorities, foreign);
    try {
      for (const client of [anonymous, stranger]) {
        await rejects(client.unary('BatchNewX509SVID', { params: [{ entry_id: entryA.id, csr: createCsr(generateKeyPair()) }] }), 'unauthenticated');
        await rejects(client.unary('NewJWTSVID', { entry_id: entryA.id, audience: ['x'] }), 'unauthenticated');
        await rejects(client.unary('RenewAgent', { csr: createCsr(generateKeyPair()) }), 'unauthenticated');
        const stream = recordSync(client.stub.SyncEntries!({ since_revision: 0, known_entries: [] }) as ClientReadableStream<SyncEntriesUpdateMsg>);
        assert.equal((await stream.ended)?.code, 'unauthenticated');
        assert.equal(stream.updates.length, 0);
      }
    } finally {
      anonymous.close();
      stranger.close();
    }
  });

  it('refuses a workload SVID of our own trust domain on the agent API (not an agent)', async () => {
    const keys = generateKeyPair();
    const [r] = await a.client.batchNewX509Svid([{ entry_id: entryA.id, csr: createCsr(keys) }]);
    const bundle = await fetchBundle(server);
    const workload = rawNodeClient(server, bundle.x509Authorities, { chain: splitDerCertificates(r!.svid_chain), privateKey: keys.privateKey });
    try {
      await rejects(workload.unary('NewJWTSVID', { entry_id: entryA.id, audience: ['x'] }), 'permission_denied', /not an agent/);
    } finally {
      workload.close();
    }
  });

  it('logged no join token, private key or JWT', () => {
    assertNoSecretsLogged(server.logs.text(), secrets);
  });
});
