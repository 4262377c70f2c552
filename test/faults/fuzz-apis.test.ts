// Fuzzes every gRPC method of the Workload API (a real agent process), the agent-facing Node API
// (server TLS port, with and without an agent certificate) and the Admin API (admin socket) with
// seeded random, mutated, hostile-but-well-formed and huge requests. Every answer must be an
// expected status (never INTERNAL, UNKNOWN or a hang), the processes must stay up and healthy, and
// the server state may change only through calls that were answered OK.
//
// EMBLEM_FUZZ_CASES (default 5000) is the total across the three APIs; EMBLEM_FUZZ_SEED picks the
// cases (failures print the case number, method, kind and bytes). The long run of the benchmark is
//   EMBLEM_FUZZ_CASES=100000 npm run test:faults -- --grep fuzz
import assert from 'node:assert/strict';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { serverChannelCredentials, serverNameOptions } from '../../src/agent/client/tls-credentials.js';
import { isEmblemError } from '../../src/common/errors.js';
import { loadDefinition } from '../../src/common/grpc/proto.js';
import { certificatesToPem } from '../../src/common/pem.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { createPopCa, createPopLeaf, foreignSvid } from '../helpers/pki.js';
import { attestWithJoinToken, fetchBundle, newJoinToken, spawnServer, type ChildServer, type TestAgent } from '../helpers/server-harness.js';
import { servedIds, spawnAgent, waitForServedIds, type AgentProcess } from './lib/attack-agent.js';
import { callRaw, codeName, EXPECTED_CODES, methodsOf, rawClient, type FuzzMethod, type Outcome } from './lib/fuzz-client.js';
import { createRng, withSpki } from './lib/fuzz-gen.js';
import { formatReport, runFuzz, type FuzzReport, type FuzzTarget } from './lib/fuzz-runner.js';
import { adminSpecs, makePools, nodeSpecs, workloadSpecs, type FuzzContext } from './lib/fuzz-specs.js';
import type { Effects } from './lib/fuzz-state.js';

const TOTAL = Number(process.env['EMBLEM_FUZZ_CASES'] ?? 5000);
const SEED = Number(process.env['EMBLEM_FUZZ_SEED'] ?? 20261122);
const SHARE = { workload: Math.round(TOTAL * 0.3), node: Math.round(TOTAL * 0.3) };
const ADMIN_CASES = TOTAL - SHARE.workload - SHARE.node;

const okCount = (results: unknown): number =>
  Array.isArray(results) ? results.filter((r: { status?: { code?: number } }) => (r.status?.code ?? 0) === 0).length : 0;

function nodeEffects(method: FuzzMethod, outcome: Outcome, into: Effects): void {
  const res = outcome.responses[0] as Record<string, unknown> | undefined;
  switch (method.name) {
    case 'AttestAgent':
      if (outcome.responses.some((r) => (r as { result?: unknown }).result)) {
        into.touched.add('agents');
        into.agentDelta = undefined; // a new agent, or a re-attested one
        into.issued += 1;
      }
      break;
    case 'RenewAgent':
      into.touched.add('agents');
      into.issued += 1;
      break;
    case 'BatchNewX509SVID':
      into.issued += okCount(res?.['results']);
      break;
    case 'NewJWTSVID':
      into.issued += 1;
      break;
  }
}

function adminEffects(method: FuzzMethod, outcome: Outcome, into: Effects): void {
  const res = outcome.responses[0] as Record<string, unknown> | undefined;
  switch (method.name) {
    case 'CreateEntry':
      into.touched.add('entries');
      into.entryDelta += 1;
      break;
    case 'BatchCreateEntry':
      into.touched.add('entries');
      into.entryDelta += okCount(res?.['results']);
      break;
    case 'UpdateEntry':
      into.touched.add('entries');
      break;
    case 'DeleteEntry':
      into.touched.add('entries');
      into.entryDelta -= 1;
      break;
    case 'EvictAgent':
      into.touched.add('agents');
      if (into.agentDelta !== undefined) into.agentDelta -= 1;
      break;
    case 'BanAgent':
      into.touched.add('agents');
      break;
    case 'SetFederatedBundle':
    case 'DeleteFederatedBundle':
      into.touched.add('federated');
      break;
    case 'PrepareAuthority':
    case 'ActivateAuthority':
    case 'TaintAuthority':
    case 'RevokeAuthority':
      into.touched.add('authorities');
      into.touched.add('bundle');
      into.ledgerUnknown = true; // agents re-key after authority changes
      break;
  }
}

describe('faults: fuzzing the Workload, Node and Admin APIs', function () {
  this.timeout(Math.max(120_000, TOTAL * 40));
  let scratch: string;
  let server: ChildServer;
  let agent: AgentProcess;
  let nodeAgent: TestAgent;
  let ctx: FuzzContext;
  const reports: string[] = [];

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'emblem-faults-fuzz-'));
    const ca = await createPopCa('Fuzz Node CA');
    const caFile = join(scratch, 'node-ca.pem');
    writeFileSync(caFile, ca.pem);
    server = await spawnServer({ x509popCaBundles: [caFile], attestationRateLimit: 1_000_000, logLevel: 'info' });
    const td = server.trustDomain;
    agent = await spawnAgent(server);
    const workloadId = `spiffe://${td}/fuzz/workload`;
    await server.admin.call('CreateEntry', { spiffe_id: workloadId, parent_id: agent.id, selectors: [{ type: 'unix', value: 'uid:0' }] });
    await waitForServedIds(agent.socket, [workloadId]);
    const wl = connectWorkloadApi({ kind: 'unix', path: agent.socket });
    const realJwt = (await wl.fetchJwt(['fuzz'], undefined, 5000)).svids[0]!.svid;
    wl.close();

    nodeAgent = await attestWithJoinToken(server);
    const fodder = await attestWithJoinToken(server);
    fodder.close();
    const entry = (fields: object) => server.admin.call<Record<string, unknown>>('CreateEntry', fields);
    const own = await entry({ spiffe_id: `spiffe://${td}/fuzz/own`, parent_id: nodeAgent.id, selectors: [{ type: 'unix', value: 'uid:4242' }] });
    const other = await entry({ spiffe_id: `spiffe://${td}/fuzz/other`, parent_id: fodder.id, selectors: [{ type: 'unix', value: 'uid:4243' }] });
    const fodderEntry = await entry({ spiffe_id: `spiffe://${td}/fuzz/fodder`, parent_id: `spiffe://${td}/fuzz-parent`, selectors: [{ type: 'unix', value: 'uid:1' }] });
    const fodderDelete = await entry({ spiffe_id: `spiffe://${td}/fuzz/doomed`, parent_id: `spiffe://${td}/fuzz-parent`, selectors: [{ type: 'unix', value: 'uid:2' }] });
    const popLeaf = await createPopLeaf(ca, 'fuzz-node');
    const stranger = await createPopLeaf(await createPopCa('Stranger CA'), 'stranger-node');
    ctx = {
      trustDomain: td,
      realJwt,
      workloadId,
      ownEntryId: String(own['id']),
      otherEntryId: String(other['id']),
      validCsr: createCsr(generateKeyPair()),
      popChain: popLeaf.chain,
      strangerChain: stranger.chain,
      joinToken: (await newJoinToken(server)).token,
      fodderAgentId: fodder.id,
      fodderEntry,
      fodderDeleteEntryId: String(fodderDelete['id']),
      pemBundle: Buffer.from(certificatesToPem([foreignSvid('partner.test').root])),
    };
  });

  after(async () => {
    nodeAgent?.close();
    await agent?.stop();
    await server?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    if (reports.length > 0) process.stdout.write(`\n${reports.join('\n')}\n`);
  });

  const check = (title: string, report: FuzzReport, expectedCases: number) => {
    reports.push(formatReport(`${title} (seed ${SEED})`, report));
    assert.equal(report.cases, expectedCases);
    assert.deepEqual(report.findings.slice(0, 25), [], `${report.findings.length} findings (seed ${SEED}); the first are listed`);
  };
  const pools = () => makePools(createRng(SEED ^ 0x5eed), ctx);

  it(`Workload API (agent socket): ${SHARE.workload} cases over its 7 methods`, async () => {
    const target: FuzzTarget = {
      name: 'workload',
      connect: () => rawClient(`unix://${agent.socket}`, credentials.createInsecure()),
      methods: methodsOf(loadDefinition('workload.proto'), 'SpiffeWorkloadAPI'),
      specs: workloadSpecs(ctx, pools()),
      securityHeader: true,
    };
    assert.equal(target.methods.length, 7);
    // The agent mints JWT-SVIDs for the audiences asked for: the ledger grows legitimately.
    const report = await runFuzz({ seed: SEED, cases: SHARE.workload, targets: [target], admin: server.admin, ledgerUnknown: true });
    check('Workload API', report, SHARE.workload);
  });

  it(`Node API (TLS port, with and without an agent certificate): ${SHARE.node} cases over its 5 methods`, async () => {
    const anchors = (await fetchBundle(server)).x509Authorities;
    const methods = methodsOf(loadDefinition('emblem/server/v1/node.proto'), 'emblem.server.v1.Node');
    assert.equal(methods.length, 5);
    const specs = nodeSpecs(ctx, pools());
    const agentIdentity = { chain: nodeAgent.chain, privateKey: nodeAgent.keyPair.privateKey };
    const connect = (identity?: typeof agentIdentity) => () =>
      rawClient(server.address, serverChannelCredentials(server.trustDomain, { kind: 'anchors', anchors }, identity), serverNameOptions(server.address));
    const report = await runFuzz({
      seed: SEED + 1,
      cases: SHARE.node,
      targets: [
        { name: 'node (agent cert)', connect: connect(agentIdentity), methods, specs, effects: nodeEffects },
        { name: 'node (no cert)', connect: connect(), methods, specs, effects: nodeEffects },
      ],
      admin: server.admin,
    });
    check('Node API', report, SHARE.node);
  });

  it(`Admin API (admin socket): ${ADMIN_CASES} cases over its 23 methods`, async () => {
    const methods = methodsOf(loadDefinition('emblem/server/v1/admin.proto'), 'emblem.server.v1.Admin');
    assert.equal(methods.length, 23);
    const report = await runFuzz({
      seed: SEED + 2,
      cases: ADMIN_CASES,
      targets: [{ name: 'admin', connect: () => rawClient(`unix://${server.socket}`, credentials.createInsecure()), methods, specs: adminSpecs(ctx, pools()), effects: adminEffects }],
      admin: server.admin,
    });
    check('Admin API', report, ADMIN_CASES);
  });

  it('answers at once, with a bounded message, when the refusal would echo a 100 KB or 1 MB input', async () => {
    const anchors = (await fetchBundle(server)).x509Authorities;
    const apis = {
      admin: { client: rawClient(`unix://${server.socket}`, credentials.createInsecure()), methods: methodsOf(loadDefinition('emblem/server/v1/admin.proto'), 'emblem.server.v1.Admin') },
      node: {
        client: rawClient(
          server.address,
          serverChannelCredentials(server.trustDomain, { kind: 'anchors', anchors }, { chain: nodeAgent.chain, privateKey: nodeAgent.keyPair.privateKey }),
          serverNameOptions(server.address),
        ),
        methods: methodsOf(loadDefinition('emblem/server/v1/node.proto'), 'emblem.server.v1.Node'),
      },
      workload: { client: rawClient(`unix://${agent.socket}`, credentials.createInsecure()), methods: methodsOf(loadDefinition('workload.proto'), 'SpiffeWorkloadAPI') },
    };
    const header = new Metadata();
    header.set('workload.spiffe.io', 'true');
    const cases: [keyof typeof apis, string, (big: string) => object][] = [
      ...['GetAgent', 'EvictAgent', 'BanAgent', 'GetEntry', 'DeleteEntry', 'ActivateAuthority', 'TaintAuthority', 'RevokeAuthority'].map(
        (m) => ['admin', m, (big: string) => ({ id: big })] as [keyof typeof apis, string, (big: string) => object],
      ),
      ['admin', 'DeleteFederatedBundle', (big) => ({ trust_domain: big })],
      ['admin', 'CreateEntry', (big) => ({ spiffe_id: `spiffe://${server.trustDomain}/${big}`, parent_id: big, selectors: [{ type: 'unix', value: big }] })],
      ['node', 'NewJWTSVID', (big) => ({ entry_id: big, audience: ['x'] })],
      ['workload', 'FetchJWTSVID', (big) => ({ audience: ['x'], spiffe_id: `spiffe://${big}` })],
    ];
    try {
      for (const size of [100_000, 1_000_000]) {
        for (const [api, name, make] of cases) {
          if (api === 'workload' && size > 200_000) continue; // beyond the Workload API's 256 KiB request limit
          const { client, methods } = apis[api];
          const method = methods.find((m) => m.name === name)!;
          const outcome = await callRaw(client, method, [method.def.requestSerialize(make('x'.repeat(size)))], api === 'workload' ? header : new Metadata(), 5000);
          assert.ok(outcome.code !== status.OK && outcome.code !== status.DEADLINE_EXCEEDED && EXPECTED_CODES.has(outcome.code), `${api} ${name} (${size} B): ${codeName(outcome.code)} ${outcome.details.slice(0, 100)}`);
          assert.ok(outcome.ms < 2000, `${api} ${name} (${size} B) took ${outcome.ms.toFixed(0)} ms`);
          assert.ok(outcome.details.length <= 1100, `${api} ${name}: a ${outcome.details.length}-character status message`);
        }
      }
    } finally {
      for (const { client } of Object.values(apis)) client.close();
    }
  });

  it('refuses a federated bundle it could not serve back (a key that does not decode, a DSA key) and keeps listing', async () => {
    const { root } = foreignSvid('partner.test');
    const ecSpki = new X509Certificate(root).publicKey.export({ type: 'spki', format: 'der' });
    const undecodable = Buffer.from(ecSpki);
    undecodable[undecodable.length - 65] = 0x05; // the uncompressed-point marker of a P-256 key
    const dsaSpki = generateKeyPairSync('dsa', { modulusLength: 1024, divisorLength: 160 }).publicKey.export({ type: 'spki', format: 'der' });
    for (const cert of [withSpki(root, undecodable), withSpki(root, dsaSpki)]) {
      const asJson = JSON.stringify({ keys: [{ kty: 'EC', use: 'x509-svid', x5c: [cert.toString('base64')] }] });
      for (const bundle of [Buffer.from(certificatesToPem([cert])), Buffer.from(asJson)]) {
        await assert.rejects(server.admin.call('SetFederatedBundle', { trust_domain: 'poison.test', bundle }), (err: unknown) => isEmblemError(err, 'invalid_argument'));
      }
    }
    const listed = await server.admin.call<{ bundles: Record<string, Buffer> }>('ListFederatedBundles');
    assert.ok(!('poison.test' in listed.bundles));
  });

  it('leaves the server and the agent up and healthy', async () => {
    const health = await server.admin.call<{ ready: boolean; checks: unknown[] }>('GetHealth');
    assert.equal(health.ready, true, JSON.stringify(health.checks));
    assert.ok(agent.alive(), 'the agent process is still running');
    assert.deepEqual(await servedIds(agent.socket), [ctx.workloadId]);
    assert.doesNotMatch(server.stderr(), /"level":(50|60)/, 'the server logged no error or fatal line');
    assert.doesNotMatch(agent.stderr(), /"level":(50|60)/, 'the agent logged no error or fatal line');
  });
});
