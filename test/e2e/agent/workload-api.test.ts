// The Workload API of a real emblem-agent process joined to a real emblem-server process: the own
// uid gets a spec-valid X509-SVID (CLI and direct gRPC), JWT fetch/validate round trip, bundles;
// another uid (a real process running as nobody) is refused until it has its own entry, and then
// gets exactly that identity; a call without the security header is InvalidArgument on every RPC.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { assertReadableByOtherUsers } from '../../helpers/other-users.js';
import { spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { structToJson } from '../../../src/agent/cli/api-commands.js';
import type { X509SvidResponseMsg } from '../../../src/agent/cli/workload-client.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { workloadApiService } from '../../../src/common/grpc/proto.js';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { parseJwtBundleBytes } from '../../../src/common/workload-bundle.js';
import { assertNoSecretsLogged, joinTokenOf } from '../../helpers/server-harness.js';
import {
  assertSpecValidX509Response,
  exited,
  idsOf,
  opensslVerify,
  removeDir,
  runAgentCli,
  startSystem,
  type TestSystem,
} from '../../helpers/system-harness.js';

const NOBODY = 65534;
const OWN_UID = process.getuid!();

// A tiny Workload API client for another uid: plain grpc-js (by absolute path), the header, raw
// bytes out (the test decodes them). Retries PERMISSION_DENIED until `waitMs` has passed.
const NOBODY_CLIENT = `
import { createRequire } from 'node:module';
const [, , grpcPath, target, waitMs] = process.argv;
const grpc = createRequire(import.meta.url)(grpcPath);
const deadline = Date.now() + Number(waitMs);
function attempt() {
  return new Promise((resolve) => {
    const client = new grpc.Client(target, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'true');
    const call = client.makeServerStreamRequest('/SpiffeWorkloadAPI/FetchX509SVID', () => Buffer.alloc(0), (b) => b, {}, md, { deadline: Date.now() + 5000 });
    const messages = [];
    let done = false;
    const finish = (code, details) => {
      if (done) return;
      done = true;
      client.close();
      resolve({ code, details, messages });
    };
    call.on('data', (b) => {
      messages.push(b.toString('base64'));
      finish(0, '');
      call.cancel();
    });
    call.on('error', (e) => finish(e.code, e.details));
    call.on('end', () => finish(0, 'ended'));
  });
}
let r = await attempt();
while (r.code === grpc.status.PERMISSION_DENIED && Date.now() < deadline) {
  await new Promise((res) => setTimeout(res, 50));
  r = await attempt();
}
process.stdout.write(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), ...r }));
`;

interface NobodyResult {
  uid: number;
  gid: number;
  code: number;
  details: string;
  messages: string[];
}

describe('e2e: agent Workload API (real server and agent processes)', function () {
  this.timeout(30_000);
  let sys: TestSystem;
  let scratch: string;
  let ownId: string;

  before(async function () {
    scratch = mkdtempSync(join(tmpdir(), 'emblem-wl-'));
    chmodSync(scratch, 0o755);
    sys = await startSystem();
    ownId = `spiffe://${sys.trustDomain}/workload/own`;
    await sys.createEntry('/workload/own', OWN_UID, { hint: 'own' });
  });

  after(async function () {
    await sys?.stop();
    if (scratch) removeDir(scratch);
  });

  const fetchOwn = async (): Promise<X509SvidResponseMsg> => {
    const client = sys.client();
    for (let i = 0; ; i++) {
      try {
        return await client.fetchX509(5000);
      } catch (err) {
        // The entry was created a moment ago: minting takes milliseconds.
        if (!isEmblemError(err, 'permission_denied') || i > 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };

  it('own uid: the CLI writes an SVID that openssl verifies against the written bundle', async function () {
    await fetchOwn();
    const out = join(scratch, 'cli-out');
    const res = await runAgentCli(['api', 'fetch', 'x509', '--socket', sys.agent.socket, '--write', out, '--output', 'json']);
    assert.equal(res.code, 0, res.stderr);
    const printed = JSON.parse(res.stdout) as { svids: { spiffeId: string; chainLength: number }[] };
    assert.deepEqual(
      printed.svids.map((s) => s.spiffeId),
      [ownId],
    );
    assert.equal(statSync(join(out, 'svid.0.key')).mode & 0o777, 0o600);
    const verify = await opensslVerify(join(out, 'bundle.0.pem'), join(out, 'svid.0.pem'));
    assert.equal(verify.code, 0, verify.output);
    assert.match(verify.output, /svid\.0\.pem: OK/);
    const cert = new X509Certificate(readFileSync(join(out, 'svid.0.pem')));
    assert.equal(cert.subjectAltName, `URI:${ownId}`);
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'svid.0.key')))), 'the written key belongs to the written SVID');
  });

  it('own uid: the raw FetchX509SVID response is spec-valid, and FetchX509Bundles matches it', async function () {
    const res = await fetchOwn();
    assertSpecValidX509Response(res, sys.trustDomain);
    assert.deepEqual(idsOf(res), [ownId]);
    assert.equal(res.svids[0]!.hint, 'own');

    const stub = rawStub(sys.agent.socket);
    try {
      const bundles = await firstMessage<{ bundles: Record<string, Buffer> }>(stub, 'FetchX509Bundles', withHeader());
      assert.deepEqual(Object.keys(bundles.bundles), [`spiffe://${sys.trustDomain}`]);
      assert.ok(bundles.bundles[`spiffe://${sys.trustDomain}`]!.equals(res.svids[0]!.bundle));
    } finally {
      stub.close();
    }
  });

  it('own uid: JWT-SVID fetch, validate through the agent and locally against FetchJWTBundles', async function () {
    const client = sys.client();
    const { svids } = await client.fetchJwt(['e2e-audience'], undefined, 5000);
    assert.deepEqual(
      svids.map((s) => s.spiffe_id),
      [ownId],
    );
    const token = svids[0]!.svid;
    const validated = await client.validateJwt('e2e-audience', token, 5000);
    assert.equal(validated.spiffe_id, ownId);
    const claims = structToJson(validated.claims as never);
    assert.equal(claims.sub, ownId);
    assert.deepEqual(claims.aud, ['e2e-audience']);
    assert.equal(typeof claims.exp, 'number');
    await assert.rejects(client.validateJwt('another-audience', token, 5000), (err: unknown) => isEmblemError(err, 'invalid_argument'));

    const { bundles } = await client.fetchJwtBundles(5000);
    assert.deepEqual(Object.keys(bundles), ['spiffe://example.org']);
    const jwks = JSON.parse(bundles['spiffe://example.org']!.toString('utf8')) as { keys: Record<string, unknown>[] };
    assert.ok(jwks.keys.length >= 1);
    for (const k of jwks.keys) {
      assert.equal(typeof k.kid, 'string');
      assert.equal(k.x5c, undefined, 'a JWT bundle must not carry X.509 keys');
      assert.ok(k.use === undefined || k.use === 'jwt-svid');
    }
    const keys = parseJwtBundleBytes(bundles['spiffe://example.org']!);
    const local = await validateJwtSvid(token, 'e2e-audience', (td) => (td === sys.trustDomain ? keys : undefined));
    assert.equal(local.spiffeId.uri, ownId);
  });

  it('another uid: nobody is refused with PERMISSION_DENIED and no message, then gets exactly its own identity', async function () {
    const grpcPath = createRequire(import.meta.url).resolve('@grpc/grpc-js');
    assertReadableByOtherUsers(grpcPath);
    const script = join(scratch, 'nobody-client.mjs');
    writeFileSync(script, NOBODY_CLIENT, { mode: 0o644 });
    const runAsNobody = async (waitMs: number): Promise<NobodyResult> => {
      const child = spawn(process.execPath, [script, grpcPath, `unix://${sys.agent.socket}`, String(waitMs)], {
        uid: NOBODY,
        gid: NOBODY,
        cwd: scratch,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const { code } = await exited(child);
      assert.equal(code, 0, `nobody client failed: ${stderr}`);
      return JSON.parse(stdout) as NobodyResult;
    };

    const refused = await runAsNobody(0);
    assert.equal(refused.uid, NOBODY, 'the client really ran as nobody');
    assert.equal(refused.code, grpc.status.PERMISSION_DENIED, refused.details);
    assert.deepEqual(refused.messages, []);

    const nobodyId = `spiffe://${sys.trustDomain}/workload/nobody`;
    await sys.createEntry('/workload/nobody', NOBODY);
    const served = await runAsNobody(5000);
    assert.equal(served.code, 0, served.details);
    assert.equal(served.messages.length, 1);
    const decode = workloadApiService().service.FetchX509SVID!.responseDeserialize;
    const res = decode(Buffer.from(served.messages[0]!, 'base64')) as X509SvidResponseMsg;
    assertSpecValidX509Response(res, sys.trustDomain);
    assert.deepEqual(idsOf(res), [nobodyId], 'nobody gets its own identity and not the root one');

    // And the own uid still gets only its own.
    assert.deepEqual(idsOf(await fetchOwn()), [ownId]);
  });

  it('neither process logged a private key, a JWT or the join token', function () {
    const token = joinTokenOf(sys.agentId);
    assertNoSecretsLogged(sys.agent.stderr(), [token]);
    assertNoSecretsLogged(sys.server.stderr(), [token]);
  });

  it('a call without the security header is INVALID_ARGUMENT on all 5 RPCs, and so is a wrong value', async function () {
    const stub = rawStub(sys.agent.socket);
    try {
      const requests: [string, object, 'stream' | 'unary'][] = [
        ['FetchX509SVID', {}, 'stream'],
        ['FetchX509Bundles', {}, 'stream'],
        ['FetchJWTBundles', {}, 'stream'],
        ['FetchJWTSVID', { audience: ['e2e-audience'] }, 'unary'],
        ['ValidateJWTSVID', { audience: 'e2e-audience', svid: 'x.y.z' }, 'unary'],
      ];
      for (const [method, request, kind] of requests) {
        const outcome = await callOnce(stub, method, request, kind, new grpc.Metadata());
        assert.equal(outcome.code, grpc.status.INVALID_ARGUMENT, `${method}: ${outcome.details}`);
        assert.equal(outcome.messages, 0, `${method} sent a message without the header`);
      }
      const wrong = new grpc.Metadata();
      wrong.set('workload.spiffe.io', 'TRUE');
      const outcome = await callOnce(stub, 'FetchX509SVID', {}, 'stream', wrong);
      assert.equal(outcome.code, grpc.status.INVALID_ARGUMENT, outcome.details);
    } finally {
      stub.close();
    }
  });
});

// --- raw grpc-js calls -------------------------------------------------------------------------

type Stub = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function rawStub(socket: string): Stub {
  const Ctor = workloadApiService();
  return new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()) as unknown as Stub;
}

function withHeader(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

function firstMessage<T>(stub: Stub, method: string, md: grpc.Metadata): Promise<T> {
  return new Promise((resolve, reject) => {
    const stream = stub[method]!.call(stub, {}, md, { deadline: Date.now() + 5000 }) as grpc.ClientReadableStream<T>;
    stream.once('data', (msg: T) => {
      resolve(msg);
      stream.cancel();
    });
    stream.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

function callOnce(stub: Stub, method: string, request: object, kind: 'stream' | 'unary', md: grpc.Metadata): Promise<{ code: number; details: string; messages: number }> {
  const opts = { deadline: Date.now() + 5000 };
  return new Promise((resolve) => {
    if (kind === 'unary') {
      stub[method]!.call(stub, request, md, opts, (err: grpc.ServiceError | null) => resolve({ code: err?.code ?? 0, details: err?.details ?? '', messages: err ? 0 : 1 }));
      return;
    }
    let messages = 0;
    const stream = stub[method]!.call(stub, request, md, opts) as grpc.ClientReadableStream<unknown>;
    stream.on('data', () => {
      messages++;
      stream.cancel();
    });
    stream.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details, messages }));
    stream.on('end', () => setImmediate(() => resolve({ code: 0, details: 'ended', messages })));
  });
}
