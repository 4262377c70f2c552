// Keeps docs/ true to the code: every configuration key and flag of both programs, and every command
// of both CLIs (as their --help lists them), is in docs/operations.md; every code path the docs name
// exists. The CLIs run as child processes, exactly as an operator would call them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_CONFIG_OPTIONS } from '../../src/agent/config.js';
import { SERVER_CONFIG_KEYS, SERVER_DEFAULTS } from '../../src/server/config.js';
import { REPO_ROOT } from '../helpers/cli.js';

type Program = 'emblem-server' | 'emblem-agent';

const MAIN: Record<Program, string> = {
  'emblem-server': join(REPO_ROOT, 'src/server/cli/main.ts'),
  'emblem-agent': join(REPO_ROOT, 'src/agent/cli/main.ts'),
};

const readDoc = (name: string): string => readFileSync(join(REPO_ROOT, 'docs', name), 'utf8');

/** `<program> <args> --help` as a child process; its stdout. */
function help(program: Program, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN[program], ...args, '--help'], { cwd: REPO_ROOT, timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${program} ${args.join(' ')} --help failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The lines of one section ("Options:", "Commands:") of commander's help output. */
function section(helpText: string, title: string): string[] {
  const lines = helpText.split('\n');
  const start = lines.indexOf(title);
  if (start < 0) return [];
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    out.push(line);
  }
  return out;
}

interface ListedCommand {
  name: string;
  /** Listed with "[options]": a command with its own flags, treated as a leaf. */
  hasOptions: boolean;
}

/** Entries of the "Commands:" section (an entry starts two spaces in; wrapped text is deeper). */
function listedCommands(helpText: string): ListedCommand[] {
  const commands: ListedCommand[] = [];
  for (const line of section(helpText, 'Commands:')) {
    const m = /^ {2}([a-z][a-z0-9-]*)((?: \[[^\]]+\]| <[^>]+>)*)/.exec(line);
    if (!m || m[1] === 'help') continue;
    commands.push({ name: m[1]!, hasOptions: (m[2] ?? '').includes('[options]') });
  }
  return commands;
}

/** The long flags of the "Options:" section, without --help. */
function listedFlags(helpText: string): string[] {
  const flags: string[] = [];
  for (const line of section(helpText, 'Options:')) {
    const m = /^ {2}(?:-\w, )?(--[a-z0-9-]+)/.exec(line);
    if (m && m[1] !== '--help') flags.push(m[1]!);
  }
  return flags;
}

/**
 * Every runnable command under `path`: commands listed with [options] are leaves; the others are
 * asked for their own --help, and are groups if they list subcommands, leaves if not.
 */
async function leafCommands(program: Program, path: string[] = []): Promise<string[]> {
  const listed = listedCommands(await help(program, path));
  const results = await Promise.all(
    listed.map(async (c) => {
      const sub = [...path, c.name];
      if (c.hasOptions) return [sub.join(' ')];
      const below = await leafCommands(program, sub);
      return below.length > 0 ? below : [sub.join(' ')];
    }),
  );
  return results.flat();
}

/**
 * The rows of the key table under `heading` (header row `| Key | Flag | ...`), by the key in their
 * first cell. Both programs have keys of the same name, so each table is read on its own.
 */
function keyTable(doc: string, heading: string): Map<string, string> {
  const lines = doc.split('\n');
  const start = lines.indexOf(heading);
  assert.ok(start >= 0, `operations.md has no "${heading}" section`);
  const header = lines.findIndex((l, i) => i > start && l.startsWith('| Key | Flag |'));
  assert.ok(header > start, `no key table under "${heading}"`);
  const rows = new Map<string, string>();
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const m = /^\| `([^`]+)` \|/.exec(line);
    assert.ok(m, `unexpected row under "${heading}": ${line}`);
    rows.set(m[1]!, line);
  }
  return rows;
}

const SERVER_KEYS_HEADING = '### Server keys (`emblem-server run`)';
const AGENT_KEYS_HEADING = '### Agent keys (`emblem-agent run`)';

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

/** Backticked repository paths (src/..., proto/..., test/..., native/..., deploy/...) in a document. */
function codePaths(doc: string): string[] {
  const paths = new Set<string>();
  for (const m of doc.matchAll(/`((?:src|proto|test|native|deploy|bench)\/[^`\s]+)`/g)) paths.add(m[1]!);
  return [...paths];
}

/** The text of every .ts file under src/. */
function sourceTexts(dir = join(REPO_ROOT, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    if (d.isDirectory()) return sourceTexts(path);
    return d.name.endsWith('.ts') ? [readFileSync(path, 'utf8')] : [];
  });
}

describe('docs/', function () {
  // About a dozen tsx child processes on a small machine.
  this.timeout(60_000);

  const operations = readDoc('operations.md');
  const leaves: Record<Program, string[]> = { 'emblem-server': [], 'emblem-agent': [] };
  const runFlags: Record<Program, string[]> = { 'emblem-server': [], 'emblem-agent': [] };

  before(async () => {
    const [serverLeaves, agentLeaves, serverRun, agentRun] = await Promise.all([
      leafCommands('emblem-server'),
      leafCommands('emblem-agent'),
      help('emblem-server', ['run']),
      help('emblem-agent', ['run']),
    ]);
    leaves['emblem-server'] = serverLeaves;
    leaves['emblem-agent'] = agentLeaves;
    runFlags['emblem-server'] = listedFlags(serverRun);
    runFlags['emblem-agent'] = listedFlags(agentRun);
  });

  it('finds the commands and run flags of both CLIs', () => {
    assert.ok(leaves['emblem-server'].length >= 20, `server commands: ${leaves['emblem-server'].join(', ')}`);
    assert.ok(leaves['emblem-server'].includes('entry create') && leaves['emblem-server'].includes('run'));
    assert.ok(leaves['emblem-agent'].includes('api fetch jwt') && leaves['emblem-agent'].includes('healthcheck'));
    assert.ok(runFlags['emblem-server'].includes('--trust-domain') && runFlags['emblem-server'].includes('--config'));
    assert.ok(runFlags['emblem-agent'].includes('--server-address'));
  });

  it('operations.md documents every server config key with its flag and default', () => {
    const flags = new Set(runFlags['emblem-server']);
    const table = keyTable(operations, SERVER_KEYS_HEADING);
    for (const key of SERVER_CONFIG_KEYS) {
      const row = table.get(key);
      assert.ok(row, `no row for server key ${key}`);
      const flag = `--${kebab(key)}`;
      if (flags.has(flag)) assert.ok(row.includes(`\`${flag}\``), `row of ${key} does not name ${flag}`);
      else assert.ok(row.includes('file only'), `${key} has no run flag, so its row must say "file only"`);
      const defaultValue = (SERVER_DEFAULTS as Record<string, unknown>)[key];
      if (defaultValue !== undefined) assert.ok(row.includes(`\`${String(defaultValue)}\``), `row of ${key} does not give its default ${String(defaultValue)}`);
    }
  });

  it('every server run flag is a config key (or --config), so the key table covers it', () => {
    const keyFlags = new Set(SERVER_CONFIG_KEYS.map((k) => `--${kebab(k)}`));
    for (const flag of runFlags['emblem-server']) {
      assert.ok(flag === '--config' || keyFlags.has(flag), `run flag ${flag} is not in SERVER_CONFIG_KEYS`);
    }
  });

  it('operations.md documents every agent option with its flag and default', () => {
    const flags = new Set(runFlags['emblem-agent']);
    const table = keyTable(operations, AGENT_KEYS_HEADING);
    for (const option of AGENT_CONFIG_OPTIONS) {
      const row = table.get(option.key);
      assert.ok(row, `no row for agent key ${option.key}`);
      assert.ok(flags.has(`--${option.flag}`), `emblem-agent run --help does not list --${option.flag}`);
      assert.ok(row.includes(`\`--${option.flag}\``), `row of ${option.key} does not name --${option.flag}`);
      if (option.defaultText) assert.ok(row.includes(`\`${option.defaultText}\``), `row of ${option.key} does not give its default ${option.defaultText}`);
    }
  });

  it('the key tables in operations.md hold no key the code does not have', () => {
    const serverRows = [...keyTable(operations, SERVER_KEYS_HEADING).keys()].sort();
    const agentRows = [...keyTable(operations, AGENT_KEYS_HEADING).keys()].sort();
    assert.deepEqual(serverRows, [...SERVER_CONFIG_KEYS].sort());
    assert.deepEqual(agentRows, AGENT_CONFIG_OPTIONS.map((o) => o.key).sort());
  });

  it('operations.md documents every command of both CLIs', () => {
    for (const program of ['emblem-server', 'emblem-agent'] as const) {
      for (const leaf of leaves[program]) {
        // A row of a CLI table: "| `emblem-server entry create --spiffe-id ...` |".
        const pattern = new RegExp('^\\| `' + `${program} ${leaf}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '[ `]', 'm');
        assert.ok(pattern.test(operations), `operations.md has no CLI table row for \`${program} ${leaf}\``);
      }
    }
  });

  it('every command in the CLI tables of operations.md exists', () => {
    let rows = 0;
    for (const line of operations.split('\n')) {
      const m = /^\| `(emblem-server|emblem-agent) ([^`]*)`/.exec(line);
      if (!m) continue;
      rows++;
      const words: string[] = [];
      for (const word of m[2]!.split(' ')) {
        if (!/^[a-z][a-z0-9-]*$/.test(word)) break;
        words.push(word);
      }
      assert.ok(leaves[m[1] as Program].includes(words.join(' ')), `operations.md documents \`${m[1]} ${words.join(' ')}\`, which does not exist`);
    }
    assert.ok(rows >= 25, `only ${rows} CLI rows found`);
  });

  it('every code path named in architecture.md exists', () => {
    const paths = codePaths(readDoc('architecture.md'));
    assert.ok(paths.length >= 40, `only ${paths.length} paths found`);
    for (const p of paths) assert.ok(existsSync(join(REPO_ROOT, p)), `architecture.md names ${p}, which does not exist`);
  });

  it('every code path named in operations.md and security.md exists', () => {
    for (const name of ['operations.md', 'security.md']) {
      for (const p of codePaths(readDoc(name))) assert.ok(existsSync(join(REPO_ROOT, p)), `${name} names ${p}, which does not exist`);
    }
  });

  it('operations.md lists exactly the metrics the code defines', () => {
    const defined = new Set<string>();
    for (const text of sourceTexts()) for (const m of text.matchAll(/'(emblem_(?:server|agent)_[a-z0-9_]+)'/g)) defined.add(m[1]!);
    const documented = new Set([...operations.matchAll(/^\| `(emblem_[a-z0-9_]+)` \|/gm)].map((m) => m[1]!));
    assert.ok(defined.size >= 15, `only ${defined.size} metrics found in src/`);
    assert.deepEqual([...documented].sort(), [...defined].sort());
  });
});
