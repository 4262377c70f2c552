// B1: X.509-SVIDs signed per second through the agent-facing BatchNewX509SVID RPC (mutual TLS,
// CSR parse + proof-of-possession verify, mint, one ledger write per batch), as a ratio to the
// machine's ECDSA P-256 ceiling from `openssl speed` measured in the same run.
// Simulated agents (the agent's client modules) attest with join tokens, each is the parent of
// 500 entries, and each keeps one batch of 500 pre-generated CSRs in flight at a time. The server
// checks CSRs on worker threads (csrVerifyWorkers) and signs on its main thread, so it may use more
// than one core: "per core" is the rate divided by the server's CPU use over the timed window (all
// its threads), i.e. SVIDs per server CPU-second. The wall-clock rate is reported beside it.
import type { X509SvidParamsMsg } from '../../src/agent/client/messages.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { measureEcdsaCeiling } from '../ceiling.js';
import { createEntries, createJoinTokens } from '../lib/admin-ops.js';
import { startCpuSample } from '../lib/proc-stats.js';
import { startServerProcess } from '../lib/server-process.js';
import { attestSimAgents, type SimAgent } from '../lib/sim-agents.js';
import { progress, round } from '../lib/stats.js';
import type { BenchOptions, Figure } from '../run.js';

const TARGET_RATIO = 0.5;
const BATCH = 500;

function freshBatch(entryIds: readonly string[]): X509SvidParamsMsg[] {
  return entryIds.map((id) => ({ entry_id: id, csr: createCsr(generateKeyPair()) }));
}

async function signAll(agent: SimAgent, batches: X509SvidParamsMsg[][]): Promise<number> {
  let signed = 0;
  for (const params of batches) {
    const results = await agent.client.batchNewX509Svid(params);
    for (const r of results) {
      if (r.status && r.status.code !== 0) throw new Error(`entry ${r.entry_id} refused: ${r.status.message}`);
      signed++;
    }
  }
  return signed;
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const agents = opts.quick ? 2 : 4;
  const perAgent = opts.quick ? 100 : BATCH;
  const rounds = opts.quick ? 2 : 6;
  // The ceiling first, on a quiet machine.
  const ceiling = measureEcdsaCeiling(opts.quick ? 1 : 3);

  progress(`B1: ECDSA ceiling ${Math.round(ceiling.ceiling)}/s`);
  const server = await startServerProcess();
  try {
    const tokens = await createJoinTokens(server.admin, agents);
    const sims = await attestSimAgents(server, tokens);
    progress(`B1: ${sims.length} agents attested`);
    try {
      const entryIds: string[][] = [];
      for (const sim of sims) {
        entryIds.push(
          await createEntries(
            server.admin,
            Array.from({ length: perAgent }, (_, i) => ({
              spiffeId: `spiffe://${server.trustDomain}/b1/${sim.id.slice(-8)}/w-${i}`,
              parentId: sim.id,
              selectors: [`unix:uid:${i}`],
            })),
          ),
        );
      }
      progress('B1: entries created');
      // Pre-generated CSRs (not timed): a fresh key per CSR, as in a re-key.
      const warmup = sims.map((_, a) => [freshBatch(entryIds[a]!)]);
      const timed = sims.map((_, a) => Array.from({ length: rounds }, () => freshBatch(entryIds[a]!)));

      progress('B1: CSRs generated');
      await Promise.all(sims.map((sim, a) => signAll(sim, warmup[a]!)));
      progress('B1: warm-up done');
      progress('B1: timed run');
      const cpu = startCpuSample(server.pid);
      const started = performance.now();
      const counts = await Promise.all(sims.map((sim, a) => signAll(sim, timed[a]!)));
      const seconds = (performance.now() - started) / 1000;
      const usage = cpu.stop();
      progress('B1: timed run done');
      const total = counts.reduce((a, b) => a + b, 0);
      const rate = total / seconds;
      const perCore = rate / usage.coreFraction;
      const ratio = perCore / ceiling.ceiling;
      return [
        { name: 'b1_rpc_svids_per_second', value: Math.round(rate), unit: `SVIDs/s wall clock (${total} in batches of ${perAgent}, ${agents} agents)` },
        { name: 'b1_server_cpu_during_run', value: round(usage.coreFraction * 100, 0), unit: '% of one core (all server threads)' },
        { name: 'b1_rpc_svids_per_server_cpu_second', value: Math.round(perCore), unit: 'SVIDs per CPU-second of the server' },
        { name: 'b1_ecdsa_ceiling', value: Math.round(ceiling.ceiling), unit: `SVIDs/s (openssl sign ${Math.round(ceiling.sign)}/s, verify ${Math.round(ceiling.verify)}/s)` },
        { name: 'b1_rpc_ratio_to_ceiling', value: round(ratio, 3), unit: 'ratio (SVIDs per server CPU-second / ceiling)', target: `>= ${TARGET_RATIO}`, pass: ratio >= TARGET_RATIO },
      ];
    } finally {
      for (const sim of sims) sim.close();
    }
  } finally {
    await server.dispose();
  }
}
