// The emblem-server CLI end to end: every command a child process, against a server that is itself
// a child process (`emblem-server run`), over the admin socket.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { parsePemCertificates } from '../../../src/common/pem.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { runServerCli, runServerCliJson } from '../../helpers/cli.js';
import { assertNoSecretsLogged, attestTestAgent, spawnServer, type ChildServer, type TestAgent } from '../../helpers/server-harness.js';

interface EntryJson {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: { type: string; value: string }[];
  dns_names: string[];
  x509_svid_ttl: number;
  hint: string;
  revision: number;
}

interface SvidJson {
  spiffe_id: string;
  kind: string;
  not_after: number;
}

describe('e2e: emblem-server CLI', function () {
  this.timeout(60_000);
  let server: ChildServer;
  const agents: TestAgent[] = [];
  const tokens: string[] = [];
  let td: string;

  const cli = (...args: string[]) => runServerCli([...args, '--socket', server.socket]);
  const json = <T = Record<string, unknown>>(...args: string[]) => runServerCliJson<T>([...args, '--socket', server.socket, '--output', 'json']);
  const count = async () => (await json<{ count: number }>('entry', 'count')).count;

  before(async () => {
    server = await spawnServer();
    td = server.trustDomain;
  });

  after(async () => {
    for (const agent of agents) agent.close();
    await server?.stop();
  });

  it('healthcheck exits 0 and names each check', async () => {
    const res = await cli('healthcheck');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^ok\s+datastore$/m);
    assert.match(res.stdout, /^ok\s+x509-authority: [0-9a-f]+$/m);
    assert.match(res.stdout, /^ok\s+agent-api: port \d+$/m);
  });

  it('token generate, then an agent attests with it; agent list/show/ban/evict', async () => {
    const [token, plain] = await Promise.all([json<{ token: string; agentId: string; expiresAt: number }>('token', 'generate', '--ttl', '5m'), cli('token', 'generate')]);
    assert.match(token.token, /^[0-9a-f]{32}$/);
    assert.equal(token.agentId, `spiffe://${td}/emblem/agent/join_token/${token.token}`);
    assert.ok(Math.abs(token.expiresAt - (Date.now() / 1000 + 300)) < 10);
    assert.equal(plain.code, 0);
    tokens.push(token.token, plain.stdout.trim());
    assert.match(plain.stdout, /^[0-9a-f]{32}\n$/);

    const first = await attestTestAgent(server, { joinToken: token.token });
    const second = await attestTestAgent(server, { joinToken: plain.stdout.trim() });
    agents.push(first, second);

    const [list, shown, text] = await Promise.all([
      json<{ agents: { id: string; banned: boolean }[] }>('agent', 'list'),
      json<{ id: string; attestation_type: string }>('agent', 'show', '--id', first.id),
      cli('agent', 'show', '--id', first.id),
    ]);
    assert.deepEqual(list.agents.map((a) => a.id).sort(), [first.id, second.id].sort());
    assert.equal(shown.id, first.id);
    assert.equal(shown.attestation_type, 'join_token');
    assert.match(text.stdout, /Attestation type\s*: join_token/);

    const [ban, evict] = await Promise.all([cli('agent', 'ban', '--id', first.id), cli('agent', 'evict', '--id', second.id)]);
    assert.equal(ban.code, 0, ban.stderr);
    assert.equal(ban.stdout, `banned ${first.id}\n`);
    assert.equal(evict.code, 0, evict.stderr);
    const [afterBan, afterEvict, missing] = await Promise.all([
      json<{ banned: boolean }>('agent', 'show', '--id', first.id),
      json<{ agents: { id: string }[] }>('agent', 'list'),
      cli('agent', 'show', '--id', second.id),
    ]);
    assert.equal(afterBan.banned, true);
    assert.deepEqual(afterEvict.agents.map((a) => a.id), [first.id]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: .*not found\n$/);
  });

  it('entry create / show / update / count / delete', async () => {
    const parent = `spiffe://${td}/emblem/agent/x509pop/0123456789abcdef0123456789abcdef01234567`;
    const before = await count();
    const created = await json<EntryJson>('entry', 'create', '--spiffe-id', `spiffe://${td}/cli/web`, '--parent-id', parent, '--selector', 'unix:uid:1000', '--selector', 'unix:gid:50', '--dns', 'web.example', '--x509-svid-ttl', '5m');
    assert.equal(created.spiffe_id, `spiffe://${td}/cli/web`);
    assert.equal(created.x509_svid_ttl, 300);
    assert.deepEqual(created.dns_names, ['web.example']);
    assert.equal(await count(), before + 1);

    const [shown, pretty] = await Promise.all([json<{ entries: EntryJson[] }>('entry', 'show', '--spiffe-id', `spiffe://${td}/cli/web`), cli('entry', 'show', '--id', created.id)]);
    assert.deepEqual(shown.entries.map((e) => e.id), [created.id]);
    assert.match(pretty.stdout, /Found 1 entry/);
    assert.match(pretty.stdout, new RegExp(`Entry ID\\s*: ${created.id}`));

    const updated = await json<EntryJson>('entry', 'update', '--id', created.id, '--hint', 'x');
    assert.equal(updated.hint, 'x');
    assert.ok(updated.revision > created.revision);
    assert.deepEqual(updated.selectors, created.selectors, 'fields not given keep their values');
    assert.deepEqual(updated.dns_names, ['web.example']);
    assert.equal(updated.x509_svid_ttl, 300);

    const deleted = await cli('entry', 'delete', '--id', created.id);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, `deleted ${created.id}\n`);
    assert.equal(await count(), before);
  });

  it('refuses invalid input with one line on stderr, a non-zero exit and nothing stored', async () => {
    const parent = `spiffe://${td}/emblem/agent/x509pop/00112233445566778899aabbccddeeff00112233`;
    const before = await count();
    const valid = ['--parent-id', parent, '--selector', 'unix:uid:1'];
    const cases: [string, string[], RegExp][] = [
      ['bad SPIFFE ID', ['entry', 'create', '--spiffe-id', 'not a spiffe id', ...valid], /spiffe/i],
      ['wrong trust domain', ['entry', 'create', '--spiffe-id', 'spiffe://other.test/x', ...valid], /trust domain/],
      ['no selectors', ['entry', 'create', '--spiffe-id', `spiffe://${td}/x`, '--parent-id', parent], /selector/],
      ['TTL out of range', ['entry', 'create', '--spiffe-id', `spiffe://${td}/x`, ...valid, '--x509-svid-ttl', '10'], /x509_svid_ttl/],
      ['unknown federated trust domain', ['entry', 'create', '--spiffe-id', `spiffe://${td}/x`, ...valid, '--federates-with', 'partner.test'], /partner\.test/],
      ['unknown flag', ['entry', 'create', '--spiffe-id', `spiffe://${td}/x`, ...valid, '--bogus'], /unknown option/],
      ['update of a missing entry', ['entry', 'update', '--id', 'no-such-entry', '--hint', 'x'], /not found/],
    ];
    const results = await Promise.all(cases.map(([, args]) => cli(...args)));
    results.forEach((res, i) => {
      const [what, , pattern] = cases[i]!;
      assert.notEqual(res.code, 0, `${what}: exit code`);
      assert.match(res.stderr, /^error: [^\n]+\n$/, `${what}: one line on stderr, got ${JSON.stringify(res.stderr)}`);
      assert.match(res.stderr, pattern, what);
      assert.equal(res.stdout, '', `${what}: nothing on stdout`);
    });
    assert.equal(await count(), before, 'nothing was stored');
  });

  it('bundle show as PEM and as a SPIFFE bundle; authority show', async () => {
    const [pem, spiffe, { authorities }] = await Promise.all([
      cli('bundle', 'show'),
      cli('bundle', 'show', '--format', 'spiffe'),
      json<{ authorities: { id: string; kind: string; status: string; notAfter: number }[] }>('authority', 'show'),
    ]);
    assert.equal(pem.code, 0, pem.stderr);
    const roots = parsePemCertificates(pem.stdout);
    assert.equal(roots.length, 1);
    const root = new X509Certificate(roots[0]!);
    assert.equal(root.ca, true);
    assert.match(root.subjectAltName ?? '', new RegExp(`URI:spiffe://${td}`));

    const doc = JSON.parse(spiffe.stdout) as { keys: { use: string; kid?: string; x5c?: string[] }[]; spiffe_sequence: number };
    assert.deepEqual(doc.keys.map((k) => k.use).sort(), ['jwt-svid', 'x509-svid']);
    assert.ok(doc.keys.find((k) => k.use === 'x509-svid')!.x5c![0] === roots[0]!.toString('base64'));
    assert.ok(doc.spiffe_sequence >= 1);

    assert.deepEqual(authorities.map((a) => `${a.kind}:${a.status}`).sort(), ['jwt:active', 'x509:active']);
    const jwtKey = doc.keys.find((k) => k.use === 'jwt-svid')!;
    assert.ok(authorities.some((a) => a.kind === 'jwt' && a.id === jwtKey.kid));
  });

  it('svid list, all and --expiring-within', async () => {
    const token = await json<{ token: string }>('token', 'generate');
    tokens.push(token.token);
    const agent = await attestTestAgent(server, { joinToken: token.token });
    agents.push(agent);
    const entry = await json<EntryJson>('entry', 'create', '--spiffe-id', `spiffe://${td}/cli/long-lived`, '--parent-id', agent.id, '--selector', 'unix:uid:7', '--x509-svid-ttl', '5h');
    const [signed] = await agent.client.batchNewX509Svid([{ entry_id: entry.id, csr: createCsr(generateKeyPair()) }]);
    assert.equal(signed!.status?.code, 0);

    const [{ svids: all }, { svids: soon }, { svids: filtered }] = await Promise.all([
      json<{ svids: SvidJson[] }>('svid', 'list'),
      json<{ svids: SvidJson[] }>('svid', 'list', '--expiring-within', '2h'),
      json<{ svids: SvidJson[] }>('svid', 'list', '--spiffe-id', `spiffe://${td}/cli/long-lived`),
    ]);
    const kinds = (svids: SvidJson[]) => new Set(svids.map((s) => `${s.kind} ${s.spiffe_id}`));
    assert.ok(kinds(all).has(`agent ${agent.id}`));
    assert.ok(kinds(all).has(`x509 spiffe://${td}/cli/long-lived`));
    assert.ok(kinds(all).has(`x509 spiffe://${td}/emblem/server`));

    assert.ok(kinds(soon).has(`agent ${agent.id}`), 'the 1 h agent SVID expires within 2 h');
    assert.ok(!kinds(soon).has(`x509 spiffe://${td}/cli/long-lived`), 'the 5 h SVID does not');
    assert.ok(soon.every((s) => s.not_after <= Date.now() / 1000 + 7200));
    assert.equal(filtered.length, 1);
  });

  it("the server's log (stderr) holds no join token, private key or JWT", () => {
    assertNoSecretsLogged(server.stderr(), tokens);
  });
});
