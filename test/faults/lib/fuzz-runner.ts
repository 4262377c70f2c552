// The fuzz loop: builds seeded cases for (target, method) pairs, sends them as raw bytes, checks
// every answer is an expected status, and after every chunk checks that the server state changed
// only as far as the calls answered OK explain.
import { Metadata, status, type Client } from '@grpc/grpc-js';
import type { AdminClient } from '../../../src/server/cli/admin-client.js';
import { callRaw, codeName, EXPECTED_CODES, type FuzzMethod, type Outcome } from './fuzz-client.js';
import { createRng, hugeField, junkBytes, mutate, type Rng } from './fuzz-gen.js';
import type { MethodSpec } from './fuzz-specs.js';
import { noEffects, snapshotState, unexplainedChanges, type Effects } from './fuzz-state.js';

export type CaseKind = 'random' | 'mutated' | 'semantic' | 'huge' | 'valid' | 'header';
export const CASE_KINDS: readonly CaseKind[] = ['random', 'mutated', 'semantic', 'huge', 'valid', 'header'];

export interface FuzzTarget {
  /** e.g. "workload", "node (agent cert)", "admin". */
  name: string;
  /** Opens a client (a connection). The runner replaces it after many cancelled streams, see below. */
  connect(): Client;
  methods: FuzzMethod[];
  specs: Record<string, MethodSpec>;
  /** Workload API: send the workload.spiffe.io header (and sometimes get it wrong on purpose). */
  securityHeader?: boolean;
  /** Adds to `into` what an OK answer of `method` may have changed on the server. */
  effects?(method: FuzzMethod, outcome: Outcome, into: Effects): void;
}

export interface FuzzReport {
  cases: number;
  byKind: Record<CaseKind, number>;
  /** "target method" -> status name -> count */
  byMethod: Record<string, Record<string, number>>;
  findings: string[];
  slowestMs: number;
  chunksChecked: number;
}

interface FuzzCase {
  index: number;
  target: FuzzTarget;
  method: FuzzMethod;
  kind: CaseKind;
  messages: Buffer[];
  metadata: Metadata;
}

/**
 * Cancelled streams a connection may take before the runner opens a new one. The server's HTTP/2
 * stack (nghttp2's defence against "Rapid Reset", CVE-2023-44487) closes a connection whose client
 * resets more than about 1000 streams in a burst, with GOAWAY INTERNAL_ERROR; the fuzzer cancels
 * every stream after its first message, far faster than any real workload.
 */
const CANCELS_PER_CONNECTION = 500;

const GENERIC: MethodSpec = { seeds: () => [{}], semantic: (rng) => junkBytes(rng), fields: [1, 2, 3] };

function encode(method: FuzzMethod, value: object | Buffer): Buffer {
  return Buffer.isBuffer(value) ? value : method.def.requestSerialize(value);
}

function buildCase(rng: Rng, index: number, target: FuzzTarget, method: FuzzMethod): FuzzCase {
  const spec = target.specs[method.name] ?? GENERIC;
  const metadata = new Metadata();
  if (target.securityHeader) metadata.set('workload.spiffe.io', 'true');
  const roll = rng.next();
  let kind: CaseKind;
  let first: Buffer;
  try {
    if (roll < 0.2) {
      kind = 'random';
      first = junkBytes(rng);
    } else if (roll < 0.5) {
      kind = 'mutated';
      first = mutate(rng, encode(method, rng.pick(spec.seeds(rng))));
    } else if (roll < 0.85) {
      kind = 'semantic';
      first = encode(method, spec.semantic(rng));
    } else if (roll < 0.86) {
      kind = 'huge';
      first = hugeField(rng, spec.fields.length > 0 ? rng.pick(spec.fields) : rng.range(1, 15));
    } else if (roll < 0.96 || !target.securityHeader) {
      kind = 'valid';
      first = encode(method, rng.pick(spec.seeds(rng)));
    } else {
      kind = 'header';
      first = encode(method, rng.pick(spec.seeds(rng)));
      metadata.remove('workload.spiffe.io');
      if (rng.chance(0.5)) metadata.set('workload.spiffe.io', rng.pick(['false', 'True', '', '1']));
      else if (rng.chance(0.5)) metadata.add('workload.spiffe.io', 'true');
    }
  } catch {
    // A value protobufjs refuses to encode: send junk instead.
    kind = 'random';
    first = junkBytes(rng);
  }
  const messages = [first];
  if (method.kind === 'bidi' && spec.followUps && kind !== 'huge') {
    for (const m of spec.followUps(rng)) messages.push(kind === 'mutated' ? mutate(rng, encode(method, m)) : encode(method, m));
  }
  return { index, target, method, kind, messages, metadata };
}

async function inPool<T>(items: T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await run(items[next++]!);
  }));
}

const describeCase = (c: FuzzCase) =>
  `#${c.index} ${c.target.name} ${c.method.name} [${c.kind}] ${c.messages.map((m) => (m.length > 48 ? `${m.subarray(0, 48).toString('hex')}…(${m.length} B)` : m.toString('hex'))).join(' | ')}`;

export async function runFuzz(options: {
  seed: number;
  cases: number;
  targets: FuzzTarget[];
  admin: AdminClient;
  chunkSize?: number;
  concurrency?: number;
  /** The ledger also grows outside the fuzzed calls (an agent serving workloads). */
  ledgerUnknown?: boolean;
  timeoutMs?: number;
}): Promise<FuzzReport> {
  const rng = createRng(options.seed);
  const pairs = options.targets.flatMap((target) => target.methods.map((method) => ({ target, method })));
  const report: FuzzReport = {
    cases: 0,
    byKind: Object.fromEntries(CASE_KINDS.map((k) => [k, 0])) as Record<CaseKind, number>,
    byMethod: {},
    findings: [],
    slowestMs: 0,
    chunksChecked: 0,
  };
  const chunkSize = options.chunkSize ?? 100;
  const connections = new Map(options.targets.map((t) => [t, { client: t.connect(), cancels: 0 }]));
  let before = await snapshotState(options.admin);
  for (let start = 0; start < options.cases; start += chunkSize) {
    const chunk = Array.from({ length: Math.min(chunkSize, options.cases - start) }, (_, i) => {
      const { target, method } = rng.pick(pairs);
      return buildCase(rng, start + i, target, method);
    });
    const effects = noEffects(options.ledgerUnknown);
    const accepted: string[] = [];
    const inFlight = new Set<FuzzCase>();
    const watchdog = setInterval(() => {
      process.stderr.write(`fuzz: still waiting on ${[...inFlight].map(describeCase).join('; ')}\n`);
    }, 20_000);
    if (process.env['EMBLEM_FUZZ_PROGRESS']) process.stderr.write(`fuzz: cases ${start}-${start + chunk.length - 1}\n`);
    await inPool(chunk, options.concurrency ?? 4, async (c) => {
      inFlight.add(c);
      const connection = connections.get(c.target)!;
      const outcome = await callRaw(connection.client, c.method, c.messages, c.metadata, options.timeoutMs ?? 15_000);
      if (outcome.cancelled) connection.cancels++;
      inFlight.delete(c);
      const alongside = () => ` (in flight alongside: ${[...inFlight].map((o) => `#${o.index} ${o.method.name} [${o.kind}] ${o.messages[0]!.length} B`).join(', ') || 'nothing'})`;
      report.cases++;
      report.byKind[c.kind]++;
      report.slowestMs = Math.max(report.slowestMs, outcome.ms);
      const key = `${c.target.name} ${c.method.name}`;
      const counts = (report.byMethod[key] ??= {});
      counts[codeName(outcome.code)] = (counts[codeName(outcome.code)] ?? 0) + 1;
      if (outcome.code === status.DEADLINE_EXCEEDED) report.findings.push(`no answer within the deadline: ${describeCase(c)}${alongside()}`);
      else if (!EXPECTED_CODES.has(outcome.code)) report.findings.push(`${codeName(outcome.code)} "${outcome.details}": ${describeCase(c)}${alongside()}`);
      else if (outcome.code === status.OK) {
        c.target.effects?.(c.method, outcome, effects);
        accepted.push(`#${c.index} ${c.method.name}`);
      }
    });
    clearInterval(watchdog);
    for (const [target, connection] of connections) {
      if (connection.cancels < CANCELS_PER_CONNECTION) continue;
      connection.client.close();
      connections.set(target, { client: target.connect(), cancels: 0 });
    }
    const after = await snapshotState(options.admin);
    for (const problem of unexplainedChanges(before, after, effects)) {
      report.findings.push(`state check after cases ${start}-${start + chunk.length - 1}: ${problem} (accepted: ${accepted.join(', ') || 'none'})`);
    }
    report.chunksChecked++;
    before = after;
  }
  for (const { client } of connections.values()) client.close();
  return report;
}

/** One line per target method: how many cases and which statuses they got. */
export function formatReport(title: string, report: FuzzReport): string {
  const lines = [
    `${title}: ${report.cases} cases (${CASE_KINDS.map((k) => `${k} ${report.byKind[k]}`).join(', ')}), ${report.chunksChecked} state checks, slowest answer ${report.slowestMs.toFixed(0)} ms`,
  ];
  for (const [key, counts] of Object.entries(report.byMethod).sort()) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    lines.push(`  ${key}: ${total} (${Object.entries(counts).sort().map(([c, n]) => `${c} ${n}`).join(', ')})`);
  }
  return lines.join('\n');
}
