// Durability under kill -9: every acknowledged write survives, complete, with a gapless change log.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatastore } from '../../../src/server/datastore/open.js';
import { newEntry, rejectsWith } from './fixtures.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

describe('level datastore under SIGKILL', () => {
  let dataDir: string;
  let child: ChildProcess | undefined;

  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-crash-'));
  });
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged entry complete, with no gap in the change log', async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));

    const deadline = Date.now() + 15_000;
    while (!stdout.includes('ready\n')) {
      assert.ok(Date.now() < deadline && proc.exitCode === null, `child did not start: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));

    // While the child holds the store, a second server cannot open it.
    await rejectsWith(
      openDatastore({ kind: 'level', dataDir }),
      'failed_precondition',
      /is in use by another emblem-server process/,
    );

    proc.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    const acked = stdout
      .split('\n')
      .slice(0, -1) // the last piece is empty or a line cut by the kill
      .filter((line) => line.startsWith('ack '))
      .map((line) => Number(line.slice(4)));
    assert.ok(acked.length > 50, `only ${acked.length} writes were acknowledged: ${stderr}`);

    const store = await openDatastore({ kind: 'level', dataDir });
    try {
      for (const n of acked) {
        const stored = await store.getEntry(newEntry(n).id);
        assert.ok(stored, `acknowledged entry ${n} is missing`);
        assert.deepEqual(stored, { ...newEntry(n), revision: stored.revision });
      }
      const revision = await store.currentRevision();
      assert.ok(revision >= acked.length);
      const changes = await store.listChanges(0, 1_000_000);
      assert.deepEqual(
        changes.map((c) => c.revision),
        Array.from({ length: revision }, (_, i) => i + 1),
        'the change log is gapless',
      );
      const entries = await store.listAllEntries();
      assert.equal(entries.length, changes.length, 'one entry per change event, no torn write');
      const byId = new Map(entries.map((e) => [e.id, e]));
      for (const c of changes) assert.equal(byId.get(c.id)?.revision, c.revision);
      // Writing goes on from the recovered revision.
      assert.equal((await store.createEntry(newEntry(1_000_000))).revision, revision + 1);
      console.log(`      ${acked.length} acknowledged, ${entries.length} present after SIGKILL`);
    } finally {
      await store.close();
    }
  });
});
