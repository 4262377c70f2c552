// The server's data directory lives on a small tmpfs mounted for the test (the suite runs as root).
// - Disk full: the server refuses writes with a clear one-line error, keeps serving reads (entries,
//   the bundle, the agent's SVIDs), and reports the datastore unhealthy; once space returns, the
//   next create succeeds without a restart, and after a SIGKILL and restart every acknowledged
//   entry, including those made after the recovery, is still there.
// - Directory unwritable: made immutable with chattr +i (root ignores chmod; a non-root run uses
//   chmod 0500). LevelDB keeps appending to its open log until it needs a new file, so the test
//   writes until the memtable (4 MB) must be flushed; then the same refusal and recovery apply.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EntryMsg } from '../../src/agent/client/messages.js';
import { errorMessage } from '../../src/common/errors.js';
import { runServerCli } from '../helpers/cli.js';
import { newJoinToken, spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { newAgentProcess, type AgentProcess } from './lib/agent-process.js';
import { recordOutput, recordSecret, recordServerKeys } from './lib/run-log.js';
import { fetchSvids, fetchUntil, registerWorkload, writeBundlePem } from './lib/workload.js';

const FS_SIZE = '16m';

/** Fills the filesystem of `dir` with one file; returns its path. */
function fillDisk(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  // The last partial page: smaller writes until nothing fits.
  const small = Buffer.alloc(512, 0x5a);
  try {
    for (;;) writeSync(fd, small);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return path;
}

interface Health {
  ready: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

describe('faults: the datastore disk is full or unwritable', function () {
  this.timeout(90_000);
  let dir: string;
  let mountPoint: string;
  let mounted = false;
  let server: ChildServer | undefined;
  let agent: AgentProcess | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-fault-disk-'));
    mountPoint = join(dir, 'fs');
    mkdirSync(mountPoint, { mode: 0o700 });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${FS_SIZE},mode=0700`, 'tmpfs', mountPoint], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`this test mounts a ${FS_SIZE} tmpfs and must run as root (CAP_SYS_ADMIN): ${errorMessage(err)}`, { cause: err });
    }
    mounted = true;
  });

  let serverDataDir: string | undefined;

  afterEach(async () => {
    await agent?.stop();
    if (serverDataDir) recordServerKeys(serverDataDir);
    serverDataDir = undefined;
    await server?.stop();
    agent = undefined;
    server = undefined;
  });

  after(() => {
    if (mounted) execFileSync('umount', [mountPoint]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses writes clearly, keeps serving reads, and recovers when space returns', async () => {
    serverDataDir = join(mountPoint, 'data');
    const s = await spawnServer({ dataDir: serverDataDir });
    server = s;
    recordOutput('disk-full server', () => s.stderr());
    const bundlePath = join(dir, 'bundle.pem');
    await writeBundlePem(s, bundlePath);
    const { token, agent_id: agentId } = await newJoinToken(s);
    recordSecret(token);
    agent = newAgentProcess({ serverAddress: s.address, trustDomain: s.trustDomain, bundlePath, joinToken: token });
    await agent.start();
    const acked: EntryMsg[] = [await registerWorkload(s, agentId, '/disk/web')];
    const served = await fetchUntil(agent.socket, (x) => x.length === 1);

    const filler = fillDisk(mountPoint);
    // The log file may still have room in its last page: write until the store refuses.
    let refusal: unknown;
    for (let i = 0; i < 500 && refusal === undefined; i++) {
      try {
        acked.push(await registerWorkload(s, `spiffe://${s.trustDomain}/disk/node`, `/disk/fill-${i}`, { hint: 'x'.repeat(900) }));
      } catch (err) {
        refusal = err;
      }
    }
    assert.ok(refusal !== undefined, 'a create failed once the disk was full');
    assert.match(errorMessage(refusal), /no space left on device/i);

    // The CLI says so in one line and exits non-zero; and keeps refusing.
    const create = await runServerCli(['entry', 'create', '--socket', s.socket, '--spiffe-id', `spiffe://${s.trustDomain}/disk/cli`, '--parent-id', agentId, '--selector', 'unix:uid:4242']);
    assert.notEqual(create.code, 0, 'entry create fails');
    assert.equal(create.stderr.trim().split('\n').length, 1, `one line: ${create.stderr}`);
    assert.match(create.stderr, /^error: datastore unavailable: .*no space left on device/i);
    const cliRefusal = create.stderr.trim();

    // Reads keep working, and the server says its datastore is not healthy.
    const show = await runServerCli(['entry', 'show', '--socket', s.socket, '--output', 'json']);
    assert.equal(show.code, 0, show.stderr);
    assert.equal(show.stdout.match(/"spiffe_id"/g)?.length, acked.length, 'entry show lists every acknowledged entry');
    const bundle = await runServerCli(['bundle', 'show', '--socket', s.socket]);
    assert.equal(bundle.code, 0, bundle.stderr);
    const health = await s.admin.call<Health>('GetHealth');
    const datastoreCheck = health.checks.find((c) => c.name === 'datastore')!;
    assert.equal(datastoreCheck.ok, false, 'the datastore check fails while writes are refused');
    assert.match(datastoreCheck.detail, /no space left on device/i);
    assert.deepEqual((await fetchSvids(agent.socket)).map((x) => x.serial), served.map((x) => x.serial), 'the agent keeps serving its SVID');
    const hc = await runServerCli(['healthcheck', '--socket', s.socket]);
    assert.notEqual(hc.code, 0, 'healthcheck exits non-zero');

    // Space returns: the very next create succeeds, without a restart, and reaches the agent.
    unlinkSync(filler);
    const afterSpace = await registerWorkload(s, agentId, '/disk/after');
    acked.push(afterSpace);
    await fetchUntil(agent.socket, (x) => x.some((y) => y.spiffeId === afterSpace.spiffe_id), 5000);
    for (let i = 0; i < 20; i++) acked.push(await registerWorkload(s, `spiffe://${s.trustDomain}/disk/node`, `/disk/more-${i}`));
    const healthy = await s.admin.call<Health>('GetHealth');
    assert.equal(healthy.ready, true, JSON.stringify(healthy.checks));

    // Nothing acknowledged was lost: not before the disk filled, not after it recovered.
    await s.kill();
    await s.restart();
    const listed = await s.admin.call<{ entries: EntryMsg[] }>('ListEntries', { page_size: 1000 });
    const byId = new Map(listed.entries.map((e) => [e.id, e]));
    for (const e of acked) assert.deepEqual(byId.get(e.id), e, `acknowledged entry ${e.spiffe_id} survived`);
    const refusedThere = listed.entries.filter((e) => !acked.some((a) => a.id === e.id));
    assert.ok(refusedThere.every((e) => e.hint === 'x'.repeat(900)), 'at most a refused fill entry, and then complete');
    console.log(`      ${acked.length} entries acknowledged; the failing write: "${errorMessage(refusal)}"; then the CLI: "${cliRefusal}"`);
  });

  it('refuses writes clearly when the datastore directory becomes unwritable, and recovers when it is writable again', async () => {
    rmSync(join(mountPoint, 'data'), { recursive: true, force: true });
    const dataDir = join(mountPoint, 'data-unwritable');
    serverDataDir = dataDir;
    const s = await spawnServer({ dataDir });
    server = s;
    recordOutput('disk-unwritable server', () => s.stderr());
    const datastoreDir = join(dataDir, 'datastore');
    const lock = (on: boolean): void => {
      if (process.getuid!() === 0) execFileSync('chattr', [on ? '+i' : '-i', datastoreDir]);
      else chmodSync(datastoreDir, on ? 0o500 : 0o700);
    };
    const acked: EntryMsg[] = [];
    let refusal: unknown;
    let next = 0;
    lock(true);
    try {
      const worker = async (): Promise<void> => {
        while (refusal === undefined && next < 8000) {
          const i = next++;
          try {
            acked.push(await registerWorkload(s, `spiffe://${s.trustDomain}/disk/node`, `/unwritable/${i}`, { hint: 'y'.repeat(1000) }));
          } catch (err) {
            refusal ??= err;
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      assert.ok(refusal !== undefined, `a create failed once LevelDB needed a new file (${acked.length} succeeded)`);
      assert.match(errorMessage(refusal), /^datastore unavailable: .*(operation not permitted|permission denied)/i);
      const create = await runServerCli(['entry', 'create', '--socket', s.socket, '--spiffe-id', `spiffe://${s.trustDomain}/unwritable/cli`, '--parent-id', `spiffe://${s.trustDomain}/disk/node`, '--selector', 'unix:uid:1']);
      assert.notEqual(create.code, 0);
      assert.match(create.stderr.trim(), /^error: datastore unavailable: [^\n]*(operation not permitted|permission denied)[^\n]*$/i);
      const count = await s.admin.call<{ count: number }>('CountEntries', {});
      assert.equal(Number(count.count), acked.length, 'reads are served');
      const health = await s.admin.call<Health>('GetHealth');
      assert.equal(health.ready, false);
    } finally {
      lock(false);
    }
    acked.push(await registerWorkload(s, `spiffe://${s.trustDomain}/disk/node`, '/unwritable/after'));
    assert.equal((await s.admin.call<Health>('GetHealth')).ready, true);
    await s.kill();
    await s.restart();
    const count = await s.admin.call<{ count: number }>('CountEntries', {});
    assert.ok(Number(count.count) >= acked.length, 'every acknowledged entry survived the restart');
    const last = await s.admin.call<EntryMsg>('GetEntry', { id: acked.at(-1)!.id });
    assert.deepEqual(last, acked.at(-1));
    console.log(`      ${acked.length} entries acknowledged before and after; refused with: "${errorMessage(refusal)}"`);
  });
});
