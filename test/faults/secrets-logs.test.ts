// No private key, join token or JWT in any log line. A realistic session runs with every process at
// --log-level debug: a server, a join-token agent and an x509pop agent, attestation failures (a spent
// token, an unknown token), entries made with the CLI, X.509 and JWT fetches through the agent CLI
// (including `--write` and a rejected JWT), a JWT authority rotation, an agent ban. Then all output
// of the session, and of every process the other fault tests ran before this file, is searched for
// PEM private keys, JWT-shaped strings, the join tokens, the JWTs handed out, and the private keys
// (server CA keys, agent keys, workload SVID keys, x509pop key, `--write` keys) in base64, base64url
// and hex, whole and as the bare private scalar.
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePemBlocks } from '../../src/common/pem.js';
import { newJoinToken, spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { createPopCa, createPopLeaf } from '../helpers/pki.js';
import { newAgentProcess, runAgentCli, runServerCliLogged, type AgentProcess } from './lib/agent-process.js';
import { findLeaks, outputSources, recordOutput, recordPrivateKey, recordSecret, recordServerKeys, secretCount, type Leak } from './lib/run-log.js';
import { fetchUntil, writeBundlePem } from './lib/workload.js';

const AUDIENCE = 'secrets-test';

function describeLeaks(leaks: Leak[]): string {
  return leaks.map((l) => `${l.what} in ${l.source}: …${l.excerpt}…`).join('\n');
}

describe('faults: no secret in any log line', function () {
  this.timeout(90_000);
  let server: ChildServer;
  const agents: AgentProcess[] = [];
  let firstSource = 0;
  const sessionSources = () => outputSources().slice(firstSource);

  before(async () => {
    firstSource = outputSources().length;
    const pop = await createPopCa('secrets-test node CA');
    server = await spawnServer({ logLevel: 'debug', jwtSvidTtl: '60s' });
    const caPath = join(server.dir, 'node-ca.pem');
    writeFileSync(caPath, pop.pem);
    // x509pop needs the CA in the server config: restart with it.
    await server.kill();
    const config = JSON.parse(readFileSync(server.configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(server.configPath, JSON.stringify({ ...config, x509popCaBundles: [caPath] }));
    await server.restart();
    recordOutput('secrets-logs server', () => server.stderr());

    const leaf = await createPopLeaf(pop, 'node-1.secrets.test');
    const certPath = join(server.dir, 'node.pem');
    const keyPath = join(server.dir, 'node.key');
    writeFileSync(certPath, leaf.chain.map((d) => `-----BEGIN CERTIFICATE-----\n${d.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`).join(''));
    writeFileSync(keyPath, leaf.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
    recordPrivateKey(leaf.privateKey.export({ format: 'der', type: 'pkcs8' }), 'x509pop node key');

    const bundlePath = join(server.dir, 'bundle.pem');
    await writeBundlePem(server, bundlePath);
    const common = { serverAddress: server.address, trustDomain: server.trustDomain, bundlePath };

    // A join-token agent, via `token generate` (stdout carries the token by design; stderr must not).
    const gen = await runServerCliLogged(['token', 'generate', '--socket', server.socket, '--output', 'json']);
    assert.equal(gen.code, 0, gen.stderr);
    const { token, agentId: joinAgentId } = JSON.parse(gen.stdout) as { token: string; agentId: string };
    recordSecret(token, 'join token (used)');
    const joinAgent = newAgentProcess({ ...common, joinToken: token });
    agents.push(joinAgent);
    await joinAgent.start();

    const popAgent = newAgentProcess({ ...common, extraArgs: ['--x509pop-cert', certPath, '--x509pop-key', keyPath] });
    agents.push(popAgent);
    await popAgent.start();
    const list = await server.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
    const popAgentId = list.agents.map((a) => a.id).find((id) => id.includes('/x509pop/'))!;
    assert.ok(popAgentId, 'the x509pop agent attested');

    // Attestations that fail: a spent token, and one the server never issued.
    const unknown = (await newJoinToken(server)).token.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
    recordSecret(unknown, 'join token (unknown)');
    const unused = await newJoinToken(server); // issued, never used
    recordSecret(unused.token, 'join token (unused)');
    for (const [label, t] of [
      ['spent', token],
      ['unknown', unknown],
    ] as const) {
      const bad = newAgentProcess({ ...common, joinToken: t });
      agents.push(bad);
      await assert.rejects(bad.start(), /exited/, `an agent with a ${label} token does not start`);
    }

    // Workloads: entries by CLI, for this test process's uid on both agents.
    for (const [parent, path] of [
      [joinAgentId, '/secrets/web'],
      [popAgentId, '/secrets/db'],
    ] as const) {
      const res = await runServerCliLogged(['entry', 'create', '--socket', server.socket, '--spiffe-id', `spiffe://${server.trustDomain}${path}`, '--parent-id', parent, '--selector', `unix:uid:${process.getuid!()}`, '--jwt-svid-ttl', '60']);
      assert.equal(res.code, 0, res.stderr);
    }
    await fetchUntil(joinAgent.socket, (s) => s.length === 1);
    await fetchUntil(popAgent.socket, (s) => s.length === 1);
  });

  after(async () => {
    for (const a of agents) await a.stop();
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  it('the search finds a planted key, token and JWT (so a clean result means something)', () => {
    const key = createPrivateKey(readFileSync(join(server.dir, 'node.key'), 'utf8'));
    const der = key.export({ format: 'der', type: 'pkcs8' });
    const d = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
    const jwtShaped = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.c2ln`;
    const plants: [string, string][] = [
      ['PEM', key.export({ format: 'pem', type: 'pkcs8' }) as string],
      ['DER base64 in a JSON blob', JSON.stringify({ blob: Buffer.concat([Buffer.from('xy'), der, Buffer.from('z')]).toString('base64') })],
      ['scalar hex', `k=${d.toString('hex')}`],
      ['scalar base64 at an odd offset', Buffer.concat([Buffer.from([1]), d]).toString('base64')],
      ['JWT', `token ${jwtShaped} end`],
    ];
    for (const [what, text] of plants) assert.ok(findLeaks('plant', text).length > 0, `finds ${what}`);
    assert.deepEqual(findLeaks('clean', 'nothing to see: spiffe://e2e.test/a, serial 5aeb4bb6'), []);
  });

  it('a realistic session at debug level logs no private key, join token or JWT', async () => {
    const [joinAgent, popAgent] = agents as [AgentProcess, AgentProcess];
    for (const agent of [joinAgent, popAgent]) {
      const out = join(agent.dir, 'svid-files');
      const x509 = await runAgentCli(['api', 'fetch', 'x509', '--socket', agent.socket, '--write', out]);
      assert.equal(x509.code, 0, x509.stderr);
      const keyPem = readFileSync(join(out, 'svid.0.key'), 'utf8');
      recordPrivateKey(parsePemBlocks(keyPem)[0]!.der, '--write key');
      createPrivateKey(keyPem); // it is a usable key

      const jwt = await runAgentCli(['api', 'fetch', 'jwt', '--socket', agent.socket, '--audience', AUDIENCE, '--output', 'json']);
      assert.equal(jwt.code, 0, jwt.stderr);
      const tokenOut = (JSON.parse(jwt.stdout) as { svids: { token: string }[] }).svids[0]!.token;
      recordSecret(tokenOut, 'JWT-SVID');
      const ok = await runAgentCli(['api', 'validate', 'jwt', '--socket', agent.socket, '--audience', AUDIENCE, '--svid', tokenOut]);
      assert.equal(ok.code, 0, ok.stderr);
      const forged = tokenOut.slice(0, -4) + (tokenOut.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      recordSecret(forged, 'forged JWT');
      const bad = await runAgentCli(['api', 'validate', 'jwt', '--socket', agent.socket, '--audience', AUDIENCE, '--svid', forged]);
      assert.notEqual(bad.code, 0, 'a forged JWT is rejected');
      const wrongAudience = await runAgentCli(['api', 'validate', 'jwt', '--socket', agent.socket, '--audience', 'someone-else', '--svid', tokenOut]);
      assert.notEqual(wrongAudience.code, 0, 'a JWT for another audience is rejected');
    }

    // Operator actions that log at the CA and the agents.
    for (const args of [
      ['authority', 'prepare', '--kind', 'jwt'],
      ['agent', 'list'],
      ['svid', 'list'],
      ['bundle', 'show'],
      ['entry', 'show'],
      ['healthcheck'],
    ]) {
      const res = await runServerCliLogged([...args, '--socket', server.socket]);
      assert.equal(res.code, 0, `${args.join(' ')}: ${res.stderr}`);
    }
    const list = await server.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
    const popAgentId = list.agents.map((a) => a.id).find((id) => id.includes('/x509pop/'))!;
    const ban = await runServerCliLogged(['agent', 'ban', '--id', popAgentId, '--socket', server.socket]);
    assert.equal(ban.code, 0, ban.stderr);
    await popAgent.waitForOutput(/banned/, 10_000).catch(() => undefined);

    await joinAgent.shutdown();
    await popAgent.shutdown();
    const leaks = sessionSources().flatMap((s) => findLeaks(s.name, s.text()));
    const lines = sessionSources().reduce((n, s) => n + s.text().split('\n').length, 0);
    console.log(`      session: ${sessionSources().length} log sources, ${lines} lines searched for ${secretCount()} secret patterns`);
    assert.deepEqual(leaks, [], describeLeaks(leaks));
  });

  it('no log line of any process of the whole fault-test run holds one', async () => {
    // The agents' keys are recorded when they stop; stop the ones still running here first.
    for (const a of agents) await a.stop();
    recordServerKeys(server.dataDir);
    const sources = outputSources();
    const leaks = sources.flatMap((s) => findLeaks(s.name, s.text()));
    const bytes = sources.reduce((n, s) => n + s.text().length, 0);
    const lines = sources.reduce((n, s) => n + s.text().split('\n').length, 0);
    console.log(`      whole run: ${sources.length} log sources, ${lines} lines (${Math.round(bytes / 1024)} KiB), ${secretCount()} secret patterns`);
    assert.ok(lines > 0);
    assert.deepEqual(leaks, [], describeLeaks(leaks));
  });
});
