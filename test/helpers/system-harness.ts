// A whole Emblem system for end-to-end tests: a real emblem-server child process (spawnServer from
// server-harness.ts) and a real emblem-agent child process, on temp dirs and an ephemeral port,
// joined with a fresh join token. Either process can be SIGKILLed and started again on the same
// data dir. Also: Workload API clients that record every X.509 update, the CLI as a child process,
// and the SPIFFE spec checks of an X509SVIDResponse (SPIFFE.md §2.4-§2.6, §5.4).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connectWorkloadApi, type WorkloadClient, type X509SvidResponseMsg } from '../../src/agent/cli/workload-client.js';
import { decodeSpiffeBundle } from '../../src/common/bundle-json.js';
import type { RawConfig } from '../../src/common/config-file.js';
import type { EmblemError } from '../../src/common/errors.js';
import { certificatesToPem } from '../../src/common/pem.js';
import { readCertificate } from '../../src/common/x509/cert-info.js';
import { splitDerCertificates } from '../../src/common/x509/chain.js';
import { OID } from '../../src/common/x509/oids.js';
import { verifyX509SvidChain } from '../../src/common/x509/validate.js';
import { REPO_ROOT } from './cli.js';
import { spawnServer, type ChildServer } from './server-harness.js';

export const SYSTEM_TD = 'example.org';
export const AGENT_MAIN = join(REPO_ROOT, 'src/agent/cli/main.ts');
export const AGENT_BIN = join(REPO_ROOT, 'bin/emblem-agent.js');

const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** A port nothing listens on right now (for processes that need one on their command line). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// --- the agent as a child process --------------------------------------------------------------

export interface ChildAgent {
  socket: string;
  dataDir: string;
  /** The current run's process (undefined before the first start). */
  readonly process: ChildProcess | undefined;
  /** stderr (the JSON log) of every run so far. */
  stderr(): string;
  /** Parsed log records of every run whose msg matches. */
  records(msg: string | RegExp): Record<string, unknown>[];
  /** Starts a run; resolves once the log shows `waitForMsg` (default "emblem-agent ready"). */
  start(options?: { joinToken?: string; waitForMsg?: string }): Promise<void>;
  /** SIGKILL: no shutdown code runs. */
  kill(): Promise<void>;
  /** SIGTERM, SIGKILL after 5 s. */
  stop(): Promise<void>;
}

export function childAgent(params: { serverAddress: () => string; trustDomain: string; bundlePath: string; dir: string; extraArgs?: string[] }): ChildAgent {
  const socket = join(params.dir, 'public', 'api.sock');
  const dataDir = join(params.dir, 'agent');
  let output = '';
  let current: ChildProcess | undefined;
  const agent: ChildAgent = {
    socket,
    dataDir,
    get process() {
      return current;
    },
    stderr: () => output,
    records: (msg) =>
      output
        .split('\n')
        .slice(0, -1) // the last piece may be a line still being written
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return []; // not a log record (e.g. a Node warning)
          }
        })
        .filter((r) => (typeof msg === 'string' ? r.msg === msg : msg.test(String(r.msg)))),
    async start(options = {}) {
      if (current && current.exitCode === null && current.signalCode === null) throw new Error('the agent is already running');
      const args = ['--import', 'tsx', AGENT_MAIN, 'run', '--server-address', params.serverAddress(), '--trust-domain', params.trustDomain];
      args.push('--trust-bundle', params.bundlePath, '--data-dir', dataDir, '--socket', socket, '--log-level', 'debug', ...(params.extraArgs ?? []));
      if (options.joinToken) args.push('--join-token', options.joinToken);
      const proc = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      current = proc;
      liveChildren.add(proc);
      proc.once('exit', () => liveChildren.delete(proc));
      const want = `"msg":"${options.waitForMsg ?? 'emblem-agent ready'}"`;
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      try {
        await new Promise<void>((resolve, reject) => {
          let pending = '';
          proc.stderr!.setEncoding('utf8');
          proc.stderr!.on('data', (chunk: string) => {
            output += chunk;
            pending += chunk;
            const lines = pending.split('\n');
            pending = lines.pop()!;
            if (lines.some((l) => l.includes(want))) resolve();
          });
          proc.once('exit', (code, signal) => reject(new Error(`emblem-agent exited (${signal ?? code}) before ${want}:\n${output.slice(-2000)}`)));
        });
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (!current) return;
      current.kill('SIGKILL');
      await exited(current);
    },
    async stop() {
      if (!current || current.exitCode !== null || current.signalCode !== null) return;
      const proc = current;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited(proc);
      clearTimeout(timer);
    },
  };
  return agent;
}

// --- server + agent ----------------------------------------------------------------------------

export interface EntryMsg {
  id: string;
  spiffe_id: string;
  parent_id: string;
  revision: number;
}

export interface TestSystem {
  trustDomain: string;
  server: ChildServer;
  agent: ChildAgent;
  /** The agent's SPIFFE ID (join_token form). */
  agentId: string;
  dir: string;
  /** Registers `spiffe://<td><path>` for processes of `uid`, parented to the agent. */
  createEntry(path: string, uid: number, extra?: { x509_svid_ttl?: number; hint?: string }): Promise<EntryMsg>;
  deleteEntry(id: string): Promise<void>;
  listAgents(): Promise<{ id: string; banned: boolean; svid_serial: string }[]>;
  /** A Workload API client of the agent's socket (the standard protocol, header included). */
  client(): WorkloadClient;
  /** Stops both processes and removes every temp dir. */
  stop(): Promise<void>;
}

export async function startSystem(options: { serverConfig?: RawConfig; agentArgs?: string[] } = {}): Promise<TestSystem> {
  const trustDomain = SYSTEM_TD;
  const server = await spawnServer({ trustDomain, ...options.serverConfig });
  // The agent's socket dir must be reachable by other uids (the nobody test): its own 0755 temp dir.
  const dir = mkdtempSync(join(tmpdir(), 'emblem-node-'));
  chmodSync(dir, 0o755);
  let agent: ChildAgent | undefined;
  try {
    const { bundle } = await server.admin.call<{ bundle: Buffer }>('GetBundle');
    const bundlePath = join(dir, 'bootstrap-bundle.pem');
    writeFileSync(bundlePath, certificatesToPem(decodeSpiffeBundle(trustDomain, bundle).x509Authorities));
    const token = await server.admin.call<{ token: string; agent_id: string }>('CreateJoinToken', { ttl: 0 });
    agent = childAgent({ serverAddress: () => server.address, trustDomain, bundlePath, dir, extraArgs: options.agentArgs });
    await agent.start({ joinToken: token.token });
    const agentId = token.agent_id;
    const clients = new Set<WorkloadClient>();
    return {
      trustDomain,
      server,
      agent,
      agentId,
      dir,
      createEntry: (path, uid, extra = {}) =>
        server.admin.call<EntryMsg>('CreateEntry', {
          spiffe_id: `spiffe://${trustDomain}${path}`,
          parent_id: agentId,
          selectors: [{ type: 'unix', value: `uid:${uid}` }],
          ...extra,
        }),
      deleteEntry: async (id) => {
        await server.admin.call('DeleteEntry', { id });
      },
      listAgents: async () => (await server.admin.call<{ agents: { id: string; banned: boolean; svid_serial: string }[] }>('ListAgents', {})).agents,
      client() {
        const c = connectWorkloadApi({ kind: 'unix', path: agent!.socket });
        clients.add(c);
        return c;
      },
      async stop() {
        for (const c of clients) c.close();
        await agent!.stop();
        await server.stop();
        removeDir(dir);
      },
    };
  } catch (err) {
    await agent?.kill();
    await server.stop();
    removeDir(dir);
    throw err;
  }
}

// --- Workload API helpers ----------------------------------------------------------------------

export interface X509Watch {
  /** Every message received, with performance.now() at arrival. */
  updates: { res: X509SvidResponseMsg; at: number }[];
  /** Resolves when the stream ends, with its status (undefined for a clean end). */
  ended: Promise<EmblemError | undefined>;
  isEnded(): boolean;
  /** The first message (index ≥ from) satisfying `match`. */
  waitFor(match: (res: X509SvidResponseMsg) => boolean, timeoutMs?: number, from?: number): Promise<X509SvidResponseMsg>;
  cancel(): void;
}

/** Opens FetchX509SVID and records every message until the stream ends or is cancelled. */
/**
 * Waits until a fetch returns `spiffeId`. The agent learns a new entry within milliseconds, but
 * not instantly: until then the caller has no identity and the Workload API rightly answers
 * PERMISSION_DENIED (clients retry, as the spec says).
 */
export async function waitForIdentity(client: WorkloadClient, spiffeId: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await client.fetchX509(2000);
      if (res.svids.some((s) => s.spiffe_id === spiffeId)) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`${spiffeId} was not served within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function watchX509(client: WorkloadClient): X509Watch {
  const updates: X509Watch['updates'] = [];
  const waiters = new Set<() => void>();
  const wake = () => [...waiters].forEach((w) => w());
  let ended = false;
  let endResolve!: (e: EmblemError | undefined) => void;
  const endedP = new Promise<EmblemError | undefined>((r) => (endResolve = r));
  const stream = client.watchX509(
    (res) => {
      updates.push({ res, at: performance.now() });
      wake();
    },
    (err) => {
      ended = true;
      endResolve(err as EmblemError | undefined);
      wake();
    },
  );
  return {
    updates,
    ended: endedP,
    isEnded: () => ended,
    waitFor(match, timeoutMs = 5000, from = 0) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching X.509 update within ${timeoutMs} ms (${updates.length} received)`));
        }, timeoutMs);
        function check(): void {
          const found = updates.slice(from).find((u) => match(u.res));
          if (!found && !ended) return;
          waiters.delete(check);
          clearTimeout(timer);
          if (found) resolve(found.res);
          else reject(new Error('the FetchX509SVID stream ended without the expected update'));
        }
        waiters.add(check);
        check();
      });
    },
    cancel: () => stream.cancel(),
  };
}

export const idsOf = (res: X509SvidResponseMsg): string[] => res.svids.map((s) => s.spiffe_id);
export const leafSerial = (der: Buffer): string => readCertificate(splitDerCertificates(der)[0]!).serial;

/** p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// --- CLI ---------------------------------------------------------------------------------------

/** `bin/emblem-agent.js <args>` as a child process; never rejects. */
export function runAgentCli(args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [AGENT_BIN, ...args], { cwd: REPO_ROOT, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `openssl verify -CAfile bundle svid`; resolves with the exit code and output. */
export function opensslVerify(bundlePem: string, svidPem: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('openssl', ['verify', '-CAfile', bundlePem, svidPem], { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, output: stdout + stderr });
    });
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

// --- SPIFFE spec checks ------------------------------------------------------------------------

/**
 * Asserts that one X509SVIDResponse follows SPIFFE.md §2.4-§2.6 and §5.4: ≥1 SVID; per SVID the
 * spiffe_id is the leaf's single URI SAN (non-root path, own trust domain), x509_svid is DER
 * certificates concatenated leaf first, x509_svid_key is unencrypted PKCS#8 of the leaf's key,
 * bundle is concatenated DER CA certificates, the chain verifies against that bundle, hints unique.
 */
export function assertSpecValidX509Response(res: X509SvidResponseMsg, trustDomain: string): void {
  assert.ok(res.svids.length >= 1, 'svids must hold at least one X509SVID');
  const hints = new Set<string>();
  for (const [i, svid] of res.svids.entries()) {
    const what = `svids[${i}] (${svid.spiffe_id})`;
    const chain = splitDerCertificates(svid.x509_svid);
    assert.ok(chain.length >= 1, `${what}: empty x509_svid`);
    assert.ok(Buffer.concat(chain).equals(svid.x509_svid), `${what}: x509_svid is not plain concatenated DER`);
    const leaf = readCertificate(chain[0]!);
    assert.deepEqual(leaf.uris, [svid.spiffe_id], `${what}: spiffe_id must equal the leaf's single URI SAN`);
    assert.equal(leaf.isCa, false, `${what}: leaf is a CA`);
    assert.ok(leaf.keyUsageCritical && leaf.keyUsage?.digitalSignature, `${what}: leaf keyUsage must be critical with digitalSignature`);
    assert.ok(!leaf.keyUsage.keyCertSign && !leaf.keyUsage.cRLSign, `${what}: leaf must not sign certificates or CRLs`);
    if (leaf.extKeyUsage) {
      assert.ok(leaf.extKeyUsage.includes(OID.serverAuth) && leaf.extKeyUsage.includes(OID.clientAuth), `${what}: EKU needs serverAuth and clientAuth`);
    }
    for (const der of chain.slice(1)) {
      const ca = readCertificate(der);
      assert.ok(ca.isCa && ca.keyUsage?.keyCertSign, `${what}: a certificate after the leaf is not a signing certificate`);
    }
    // x509_svid_key: DER PKCS#8 (createPrivateKey refuses SEC1 or PEM with type pkcs8), the leaf's key.
    const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
    const leafSpki = new X509Certificate(chain[0]!).publicKey.export({ format: 'der', type: 'spki' });
    assert.ok(createPublicKey(key).export({ format: 'der', type: 'spki' }).equals(leafSpki), `${what}: x509_svid_key does not match the leaf`);

    const bundle = splitDerCertificates(svid.bundle);
    assert.ok(bundle.length >= 1, `${what}: empty bundle`);
    assert.ok(Buffer.concat(bundle).equals(svid.bundle), `${what}: bundle is not plain concatenated DER`);
    for (const der of bundle) {
      const ca = readCertificate(der);
      assert.ok(ca.isCa && ca.keyUsage?.keyCertSign, `${what}: bundle holds a certificate that is not a CA`);
    }
    const verified = verifyX509SvidChain(chain, (td) => (td === trustDomain ? bundle : undefined));
    assert.equal(verified.spiffeId.uri, svid.spiffe_id);
    assert.equal(verified.spiffeId.trustDomain, trustDomain);
    assert.notEqual(verified.spiffeId.path, '', `${what}: root path`);
    if (svid.hint) {
      assert.ok(!hints.has(svid.hint), `${what}: duplicate hint ${svid.hint}`);
      hints.add(svid.hint);
    }
  }
  for (const key of Object.keys(res.federated_bundles)) assert.match(key, /^spiffe:\/\/[^/]+$/, 'federated_bundles keys are trust domain IDs');
}
