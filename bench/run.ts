// `npm run bench [-- --quick] [-- --strict] [scenario ...]`: runs every module in bench/ and
// bench/scenarios/ that exports `run(opts): Promise<Figure[]>` (or only the named ones), prints the
// machine's facts and one JSON line per figure, then a markdown table. A new scenario is just a new
// module in one of those folders; such modules must not do work at import time. Helpers live in
// bench/lib/, which is not scanned.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchOptions {
  /** A small, fast run (CI smoke test) instead of the full measurement. */
  quick: boolean;
}

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** Human-readable target, e.g. ">= 0.5". */
  target?: string;
  pass?: boolean;
}

export type Scenario = (opts: BenchOptions) => Promise<Figure[]>;

export interface MachineFacts {
  cores: number;
  cpuModel: string;
  node: string;
  opensslLinked: string;
  opensslCli: string;
  platform: string;
  loadAverage: number[];
  totalMemoryMiB: number;
}

export function machineFacts(): MachineFacts {
  let opensslCli = 'unavailable';
  try {
    opensslCli = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  } catch {
    // keep 'unavailable'
  }
  return {
    cores: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    opensslLinked: process.versions.openssl ?? 'unknown',
    opensslCli,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    totalMemoryMiB: Math.round(os.totalmem() / 2 ** 20),
  };
}

const benchDir = dirname(fileURLToPath(import.meta.url));

const SCENARIO_DIRS = [benchDir, join(benchDir, 'scenarios')];

/** Candidate modules by scenario name (file name without extension), bench/ first. */
function scenarioFiles(): Map<string, string> {
  const self = basename(fileURLToPath(import.meta.url));
  const out = new Map<string, string>();
  for (const dir of SCENARIO_DIRS) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) {
      if (!/^[a-z0-9][\w-]*\.ts$/i.test(f) || f.endsWith('.d.ts') || (dir === benchDir && f === self)) continue;
      const name = f.replace(/\.ts$/, '');
      if (out.has(name)) throw new Error(`two bench modules are named ${name}`);
      out.set(name, join(dir, f));
    }
  }
  return out;
}

function markdownTable(rows: { scenario: string; figure: Figure }[], facts: MachineFacts): string {
  const fmt = (v: number): string => (Number.isInteger(v) ? v.toLocaleString('en-US') : String(v));
  const lines = [
    `Machine: ${facts.cores} cores (${facts.cpuModel}), Node ${facts.node}, OpenSSL ${facts.opensslLinked} (CLI: ${facts.opensslCli}), load ${facts.loadAverage.join(' ')}`,
    '',
    '| scenario | figure | value | unit | target | pass |',
    '|---|---|---:|---|---|---|',
  ];
  for (const { scenario, figure: f } of rows) {
    const pass = f.pass === undefined ? '' : f.pass ? 'yes' : 'NO';
    lines.push(`| ${scenario} | ${f.name} | ${fmt(f.value)} | ${f.unit} | ${f.target ?? ''} | ${pass} |`);
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const strict = argv.includes('--strict');
  const wanted = argv.filter((a) => !a.startsWith('--'));
  const files = scenarioFiles();
  for (const w of wanted) if (!files.has(w)) throw new Error(`no bench module named ${w} (have: ${[...files.keys()].join(', ')})`);

  const facts = machineFacts();
  console.log(JSON.stringify({ machine: facts, quick }));
  const rows: { scenario: string; figure: Figure }[] = [];
  for (const [scenario, file] of files) {
    if (wanted.length > 0 && !wanted.includes(scenario)) continue;
    const mod = (await import(pathToFileURL(file).href)) as { run?: unknown };
    if (typeof mod.run !== 'function') continue; // a helper module, not a scenario
    const figures = await (mod.run as Scenario)({ quick });
    for (const figure of figures) {
      console.log(JSON.stringify({ scenario, ...figure }));
      rows.push({ scenario, figure });
    }
  }
  console.log('\n' + markdownTable(rows, facts));
  return strict && rows.some((r) => r.figure.pass === false) ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(2);
    },
  );
}
