// SIGKILL of a real emblem-server in the middle of CA rotation (prepare, then activate), with a real
// agent and workloads holding X509-SVIDs (20 s TTL, so they rotate onto new CAs during the test) and
// JWT-SVIDs. Each round kills the server at one point of one step: when the new key file lands
// (prepare), right after the server's 1st or 2nd datastore write that follows the request, or at a
// random delay. After every restart the server's bundle must validate every SVID a workload holds
// (X.509 and JWT), the active authority must be published, an SVID minted now must verify, and the
// workloads' own bundle must catch up and validate everything they hold.
import assert from 'node:assert/strict';
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { isEmblemError } from '../../src/common/errors.js';
import { validateJwtSvid } from '../../src/common/jwt-svid.js';
import { readCertificate } from '../../src/common/x509/cert-info.js';
import { eventually, fetchBundle, newJoinToken, spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { newAgentProcess, type AgentProcess } from './lib/agent-process.js';
import { recordOutput, recordServerKeys, recordSecret } from './lib/run-log.js';
import { assertChainsTo, fetchSvids, fetchUntil, registerWorkload, watchSvids, writeBundlePem, type HeldSvid, type SvidWatch } from './lib/workload.js';

type Kind = 'x509' | 'jwt';
type KillPoint = 'key-file' | 'write-1' | 'write-2' | 'random';
interface Round {
  kind: Kind;
  step: 'prepare' | 'activate';
  at: KillPoint;
}

const ROUNDS: Round[] = [
  { kind: 'x509', step: 'prepare', at: 'key-file' },
  { kind: 'x509', step: 'prepare', at: 'write-1' },
  { kind: 'x509', step: 'prepare', at: 'write-2' },
  { kind: 'x509', step: 'activate', at: 'write-1' },
  { kind: 'x509', step: 'activate', at: 'write-2' },
  { kind: 'x509', step: 'activate', at: 'random' },
  { kind: 'x509', step: 'prepare', at: 'random' },
  { kind: 'jwt', step: 'prepare', at: 'key-file' },
  { kind: 'jwt', step: 'activate', at: 'write-1' },
];
const AUDIENCE = 'crash-rotation';

interface AuthorityMsg {
  id: string;
  kind: string;
  status: string;
  not_after: number;
}

/** Kills `server` at `at` (counted from now); resolves once it is dead. */
function armKill(server: ChildServer, at: KillPoint): { fired: Promise<void>; disarm(): void } {
  const watchers: FSWatcher[] = [];
  let fire!: () => void;
  const fired = new Promise<void>((resolve) => {
    fire = () => {
      for (const w of watchers) w.close();
      resolve(server.kill());
    };
  });
  let once = false;
  const trigger = (): void => {
    if (once) return;
    once = true;
    fire();
  };
  const timer = setTimeout(trigger, at === 'random' ? Math.random() * 15 : 3000);
  if (at === 'key-file') {
    watchers.push(watch(join(server.dataDir, 'keys'), (_event, name) => (name && String(name).endsWith('.pem') ? trigger() : undefined)));
  } else if (at !== 'random') {
    let writes = 0;
    const needed = at === 'write-1' ? 1 : 2;
    watchers.push(watch(join(server.dataDir, 'datastore'), (event, name) => (event === 'change' && name && String(name).endsWith('.log') && ++writes >= needed ? trigger() : undefined)));
  }
  return {
    fired: fired.finally(() => clearTimeout(timer)),
    disarm: () => {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}

describe('faults: SIGKILL the server during CA rotation', function () {
  this.timeout(180_000);
  let server: ChildServer;
  let agent: AgentProcess | undefined;
  let watches: SvidWatch[] = [];
  const jwts: { token: string; spiffeId: string; exp: number }[] = [];

  before(async () => {
    server = await spawnServer({ caTtl: '1h', x509SvidTtl: '20s', jwtSvidTtl: '5m', agentSvidTtl: '1h' });
    recordOutput('crash-rotation server', () => server.stderr());
  });

  after(async () => {
    for (const w of watches) w.cancel();
    await agent?.stop();
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  const workloadIds = () => [`spiffe://${server.trustDomain}/rot/a`, `spiffe://${server.trustDomain}/rot/b`];
  const authorities = async (): Promise<AuthorityMsg[]> => (await server.admin.call<{ authorities: AuthorityMsg[] }>('ListAuthorities')).authorities;

  /** Every SVID any workload was given that has not expired yet. */
  const heldNow = (): HeldSvid[] => {
    const now = Date.now() / 1000;
    const bySerial = new Map<string, HeldSvid>();
    for (const w of watches) for (const u of w.updates) for (const s of u.svids) if (s.notAfter > now + 1) bySerial.set(s.serial, s);
    return [...bySerial.values()];
  };

  async function checkAfterRestart(label: string, workloadIds: string[]): Promise<string> {
    const bundle = await fetchBundle(server);
    const list = await authorities();
    for (const kind of ['x509', 'jwt']) {
      assert.equal(list.filter((a) => a.kind === kind && a.status === 'active').length, 1, `${label}: one active ${kind} authority`);
    }
    const published = new Set(bundle.x509Authorities.map((c) => readCertificate(c).skid));
    for (const a of list.filter((x) => x.kind === 'x509' && ['prepared', 'active', 'old'].includes(x.status))) {
      assert.ok(published.has(a.id), `${label}: ${a.status} X.509 authority ${a.id} is in the bundle`);
    }
    const kids = new Set(bundle.jwtAuthorities.map((k) => k.kid));
    for (const a of list.filter((x) => x.kind === 'jwt' && ['prepared', 'active', 'old'].includes(x.status))) {
      assert.ok(kids.has(a.id), `${label}: ${a.status} JWT authority ${a.id} is in the bundle`);
    }

    // The server's bundle validates everything workloads hold.
    const held = heldNow();
    assert.ok(held.length >= workloadIds.length, `${label}: workloads hold SVIDs`);
    for (const s of held) assertChainsTo(s, bundle.x509Authorities);
    const jwtKeys = () => bundle.jwtAuthorities;
    for (const j of jwts.filter((x) => x.exp > Date.now() / 1000 + 1)) {
      const v = await validateJwtSvid(j.token, AUDIENCE, jwtKeys);
      assert.equal(v.spiffeId.uri, j.spiffeId);
    }

    // The agent reconnects, and what it serves now is signed by a published authority; the
    // workloads' bundle catches up with the server's and validates all they hold.
    const fresh = await workloadsSeeServerBundle(workloadIds);
    for (const s of fresh) for (const h of [...heldNow(), s]) assertChainsTo(h, s.bundle);
    const states = list.map((a) => `${a.kind}:${a.status}`).sort().join(',');
    return `${label} -> [${states}]`;
  }

  /** Waits until the agent serves every workload ID with exactly the server's X.509 authorities. */
  async function workloadsSeeServerBundle(workloadIds: string[]): Promise<HeldSvid[]> {
    const serverAnchors = new Set((await fetchBundle(server)).x509Authorities.map((c) => c.toString('base64')));
    const sameAnchors = (s: HeldSvid) => s.bundle.length === serverAnchors.size && s.bundle.every((c) => serverAnchors.has(c.toString('base64')));
    try {
      return await fetchUntil(agent!.socket, (svids) => workloadIds.every((id) => svids.some((s) => s.spiffeId === id)) && svids.every(sameAnchors), 20_000);
    } catch (err) {
      const now = await fetchBundle(server);
      const held = await fetchSvids(agent!.socket).catch(() => []);
      const skids = (ders: Buffer[]) => ders.map((c) => readCertificate(c).skid!.slice(0, 8)).sort().join(',');
      throw new Error(`${(err as Error).message}; server bundle #${now.sequence} [${skids(now.x509Authorities)}], workloads have [${held.map((h) => skids(h.bundle)).join(' | ')}]`, { cause: err });
    }
  }

  async function fetchJwt(spiffeId: string): Promise<void> {
    const client = connectWorkloadApi({ kind: 'unix', path: agent!.socket });
    try {
      const res = await client.fetchJwt([AUDIENCE], spiffeId, 5000);
      for (const s of res.svids) {
        const exp = (JSON.parse(Buffer.from(s.svid.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp;
        jwts.push({ token: s.svid, spiffeId: s.spiffe_id, exp });
        recordSecret(s.svid);
      }
    } finally {
      client.close();
    }
  }

  it(`keeps every held SVID valid across ${ROUNDS.length} kills during prepare and activate`, async () => {
    const bundlePath = join(server.dir, 'bundle.pem');
    await writeBundlePem(server, bundlePath);
    const { token, agent_id: agentId } = await newJoinToken(server);
    recordSecret(token);
    agent = newAgentProcess({ serverAddress: server.address, trustDomain: server.trustDomain, bundlePath, joinToken: token });
    await agent.start();
    const ids = workloadIds();
    await registerWorkload(server, agentId, '/rot/a');
    await registerWorkload(server, agentId, '/rot/b');
    await fetchUntil(agent.socket, (svids) => ids.every((id) => svids.some((s) => s.spiffeId === id)));
    watches = [watchSvids(agent.socket), watchSvids(agent.socket)];
    assert.ok(await eventually(() => watches.every((w) => (w.latest()?.length ?? 0) === 2), 5000), 'workloads receive their SVIDs');

    const report: string[] = [];
    for (const [i, round] of ROUNDS.entries()) {
      await runRound(i, round, report).catch((err: unknown) => {
        throw new Error(`round ${i} (${round.kind} ${round.step} @${round.at}) failed; before it:\n${report.join('\n')}\n${(err as Error).message}`, { cause: err });
      });
    }
    console.log(`      ${report.join('\n      ')}`);
    const x509Seen = new Set(heldNow().map((s) => readCertificate(s.chain[0]!).akid));
    console.log(`      workloads hold unexpired SVIDs from ${x509Seen.size} X.509 authorities`);
  });

  /** One kill during `round`, a restart, the checks, then the rotation finished without a kill. */
  async function runRound(i: number, round: Round, report: string[]): Promise<void> {
    const a = agent!;
    const ids = workloadIds();
    await fetchJwt(ids[i % 2]!);
    // An activation needs a prepared authority of its kind.
    let prepared = (await authorities()).find((x) => x.kind === round.kind && x.status === 'prepared');
    if (round.step === 'activate' && !prepared) prepared = await server.admin.call<AuthorityMsg>('PrepareAuthority', { kind: round.kind });
    // As an operator should: the prepared authority reaches every agent before it is activated.
    if (round.step === 'activate') await workloadsSeeServerBundle(ids);

    const kill = armKill(server, round.at);
    const rpc =
      round.step === 'prepare'
        ? server.admin.call<AuthorityMsg>('PrepareAuthority', { kind: round.kind })
        : server.admin.call<AuthorityMsg>('ActivateAuthority', { id: prepared!.id });
    const outcome = await rpc.then(
      () => 'answered',
      (err: unknown) => {
        if (isEmblemError(err, 'failed_precondition')) throw err; // a refused step would test nothing
        return 'cut off';
      },
    );
    await kill.fired;
    kill.disarm();
    const outputMark = a.runOutput().length; // a "sync stream up" from here on is a reconnect
    await server.restart();
    const restarted = Date.now();
    await a.waitForOutput(/"msg":"sync stream up"/, 40_000, outputMark);
    const reconnectMs = Date.now() - restarted;
    report.push(await checkAfterRestart(`round ${i} ${round.kind} ${round.step} @${round.at} (${outcome}, agent back in ${reconnectMs} ms)`, ids));

    // Finish the rotation, so the next round starts from a clean active + no prepared state.
    const stillPrepared = (await authorities()).find((x) => x.kind === round.kind && x.status === 'prepared');
    if (stillPrepared) {
      await workloadsSeeServerBundle(ids);
      await server.admin.call('ActivateAuthority', { id: stillPrepared.id });
    }
  }
});
