// The quick start as a user runs it: `npm start -- --data-dir D --port P` in its own process group,
// wait for the banner, fetch an SVID with the printed command, check it is spec-valid, Ctrl-C
// (SIGINT to the whole group) and check that nothing is left; then again on the same data dir: the
// same identity is served by the same agent (no new attestation, no duplicate entry).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { connectAdmin } from '../../src/server/cli/admin-client.js';
import { parsePemCertificates } from '../../src/common/pem.js';
import { REPO_ROOT, runServerCliJson } from '../helpers/cli.js';
import { eventually } from '../helpers/server-harness.js';
import { assertSpecValidX509Response, exited, freePort, idsOf, opensslVerify, removeDir } from '../helpers/system-harness.js';

interface Banner {
  socket: string;
  adminSocket: string;
  identity: string;
  /** The printed `… --write /tmp/svid` command, split into words. */
  writeCommand: string[];
}

/** Processes of a process group, from /proc (zombies count as gone). */
function groupMembers(pgid: number): { pid: number; cmdline: string }[] {
  const members: { pid: number; cmdline: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' || Number(fields[2]) !== pgid) continue;
      members.push({ pid: Number(name), cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ') });
    } catch {
      // the process went away while we looked
    }
  }
  return members;
}

describe('e2e: quick start (npm start)', function () {
  this.timeout(60_000);
  let scratch: string;
  let dataDir: string;
  let port: number;
  let current: ChildProcess | undefined;

  before(async function () {
    scratch = mkdtempSync(join(tmpdir(), 'emblem-qs-'));
    dataDir = join(scratch, 'state');
    port = await freePort();
  });

  afterEach(function () {
    if (current?.pid && groupMembers(current.pid).length > 0) process.kill(-current.pid, 'SIGKILL');
  });

  after(function () {
    if (scratch) removeDir(scratch);
  });

  async function startQuickstart(): Promise<{ child: ChildProcess; banner: Banner; output: () => string }> {
    const child = spawn('npm', ['start', '--', '--data-dir', dataDir, '--port', String(port)], {
      cwd: REPO_ROOT,
      detached: true, // its own process group, like a shell job: Ctrl-C signals every member
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    current = child;
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const ready = await eventually(() => out.includes('Ctrl-C stops both.') || child.exitCode !== null, 40_000);
    assert.ok(ready && child.exitCode === null, `the quick start printed no banner:\n${out}`);
    const line = (re: RegExp) => {
      const m = re.exec(out);
      assert.ok(m, `the banner lacks ${re}:\n${out}`);
      return m[1]!;
    };
    const banner: Banner = {
      socket: line(/Workload API:\s+unix:\/\/(\S+)/),
      adminSocket: line(/admin socket (\S+)/),
      identity: line(/your identity:\s+(\S+)/),
      writeCommand: line(/^\s+(\.\/bin\/emblem-agent\.js api fetch x509 .*--write \S+)$/m).split(' '),
    };
    return { child, banner, output: () => out };
  }

  async function interruptAndCheck(child: ChildProcess): Promise<void> {
    const members = groupMembers(child.pid!);
    const server = members.filter((m) => m.cmdline.includes('src/server/cli/main.ts run'));
    const agent = members.filter((m) => m.cmdline.includes('src/agent/cli/main.ts run'));
    assert.equal(server.length, 1, 'one emblem-server child');
    assert.equal(agent.length, 1, 'one emblem-agent child');
    process.kill(-child.pid!, 'SIGINT');
    const result = await Promise.race([exited(child), new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
    assert.notEqual(result, 'running', 'npm start is still running 10 s after Ctrl-C');
    assert.ok(await eventually(() => groupMembers(child.pid!).length === 0, 5000), `left running: ${JSON.stringify(groupMembers(child.pid!))}`);
  }

  let firstIdentity: string;

  it('first run: the printed command fetches a spec-valid SVID; Ctrl-C stops the server and the agent', async function () {
    const { child, banner } = await startQuickstart();
    assert.equal(banner.identity, `spiffe://example.org/user/${userInfo().username.replace(/[^A-Za-z0-9._-]/g, '_')}`);
    firstIdentity = banner.identity;

    // The printed command, writing to our temp dir instead of /tmp/svid.
    const out = join(scratch, 'svid');
    const [cmd, ...args] = banner.writeCommand;
    args[args.length - 1] = out;
    const fetched = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(cmd!, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      ),
    );
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.match(fetched.stdout, new RegExp(`SPIFFE ID\\s+: ${banner.identity}`));
    const verify = await opensslVerify(join(out, 'bundle.0.pem'), join(out, 'svid.0.pem'));
    assert.equal(verify.code, 0, verify.output);

    // What was written is spec-valid (as the DER forms the Workload API carries)...
    const chain = parsePemCertificates(readFileSync(join(out, 'svid.0.pem'), 'utf8'));
    assertSpecValidX509Response(
      {
        svids: [
          {
            spiffe_id: banner.identity,
            x509_svid: Buffer.concat(chain),
            x509_svid_key: createPrivateKey(readFileSync(join(out, 'svid.0.key'))).export({ format: 'der', type: 'pkcs8' }),
            bundle: Buffer.concat(parsePemCertificates(readFileSync(join(out, 'bundle.0.pem'), 'utf8'))),
            hint: '',
          },
        ],
        crl: [],
        federated_bundles: {},
      },
      'example.org',
    );
    // ...and so is the raw response on the socket.
    const client = connectWorkloadApi({ kind: 'unix', path: banner.socket });
    try {
      const res = await client.fetchX509(5000);
      assertSpecValidX509Response(res, 'example.org');
      assert.deepEqual(idsOf(res), [banner.identity]);
    } finally {
      client.close();
    }

    await interruptAndCheck(child);
  });

  it('second run on the same data dir: same identity, same single agent, no new join token', async function () {
    const { child, banner } = await startQuickstart();
    assert.equal(banner.identity, firstIdentity);
    const agentProc = groupMembers(child.pid!).find((m) => m.cmdline.includes('src/agent/cli/main.ts run'));
    assert.ok(agentProc && !agentProc.cmdline.includes('--join-token'), 'the agent was started without a join token');

    const client = connectWorkloadApi({ kind: 'unix', path: banner.socket });
    try {
      const res = await client.fetchX509(5000);
      assertSpecValidX509Response(res, 'example.org');
      assert.deepEqual(idsOf(res), [banner.identity]);
    } finally {
      client.close();
    }
    const agents = await runServerCliJson<{ agents: { id: string }[] }>(['agent', 'list', '--socket', banner.adminSocket, '--output', 'json']);
    assert.equal(agents.agents.length, 1, 'no second agent was attested');
    const admin = connectAdmin(banner.adminSocket, 5000);
    try {
      const { entries } = await admin.call<{ entries: { parent_id: string }[] }>('ListEntries', { spiffe_id: banner.identity });
      assert.deepEqual(
        entries.map((e) => e.parent_id),
        [agents.agents[0]!.id],
        'the entry was kept, not duplicated',
      );
    } finally {
      admin.close();
    }

    await interruptAndCheck(child);
  });
});
