// Shared by the agent-core tests: a real test PKI (CA, server SVID, SVID minting) and a real gRPC
// server speaking node.proto over TLS that stands in for emblem-server at the network boundary.
// It implements only what each test needs; anything else answers UNIMPLEMENTED.
import * as grpc from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import { nodeService } from '../../../src/common/grpc/proto.js';
import { certificatesToPem } from '../../../src/common/pem.js';
import { serverId } from '../../../src/common/spiffe-id.js';
import type { TrustBundle } from '../../../src/common/trust-bundle.js';
import { createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { concatDer } from '../../../src/common/x509/chain.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { prepareIssuer, type Issuer } from '../../../src/common/x509/issuer.js';
import { exportPkcs8Der, generateKeyPair } from '../../../src/common/x509/keys.js';
import { mintX509Svid } from '../../../src/common/x509/leaf.js';
import type { EntryMsg, SyncEntriesRequestMsg, SyncEntriesUpdateMsg } from '../../../src/agent/client/messages.js';

export const TD = 'example.org';
export const AGENT_ID = `spiffe://${TD}/emblem/agent/join_token/0123456789abcdef0123456789abcdef`;

export interface TestPki {
  trustDomain: string;
  caDer: Buffer;
  issuer: Issuer;
  bundle: TrustBundle;
  /** Mints an SVID for `publicKey`; returns the chain (leaf only: the CA is the root). */
  mint(spiffeId: string, publicKey: KeyObject | Buffer, ttlSeconds?: number, nowMs?: number): Buffer[];
  /** A key pair with an SVID for `spiffeId`. */
  identity(spiffeId: string, ttlSeconds?: number, nowMs?: number): { chain: Buffer[]; privateKey: KeyObject; privateKeyPkcs8: Buffer };
}

export function createTestPki(trustDomain = TD, nowMs = Date.now()): TestPki {
  const keyPair = generateKeyPair();
  const caDer = createSelfSignedCa({ trustDomain, keyPair, ttlSeconds: 10 * 86400, now: nowMs - 3600_000 });
  const issuer = prepareIssuer(caDer, keyPair.privateKey);
  const mint = (spiffeId: string, publicKey: KeyObject | Buffer, ttlSeconds = 3600, now = Date.now()): Buffer[] => [
    mintX509Svid(issuer, { spiffeId, publicKey, ttlSeconds, now }).der,
  ];
  return {
    trustDomain,
    caDer,
    issuer,
    bundle: { trustDomain, x509Authorities: [caDer], jwtAuthorities: [], sequence: 1 },
    mint,
    identity(spiffeId, ttlSeconds, now) {
      const keys = generateKeyPair();
      return { chain: mint(spiffeId, keys.publicKey, ttlSeconds, now), privateKey: keys.privateKey, privateKeyPkcs8: exportPkcs8Der(keys.privateKey) };
    },
  };
}

export function entryMsg(e: Partial<EntryMsg> & { id: string }): EntryMsg {
  return {
    spiffe_id: `spiffe://${TD}/workload/${e.id}`,
    parent_id: AGENT_ID,
    selectors: [{ type: 'unix', value: `uid:${e.id}` }],
    x509_svid_ttl: 0,
    jwt_svid_ttl: 0,
    dns_names: [],
    federates_with: [],
    admin: false,
    downstream: false,
    hint: '',
    expires_at: 0,
    created_at: 1,
    revision: 1,
    ...e,
  };
}

export function syncUpdate(u: Partial<SyncEntriesUpdateMsg> & { revision: number }): SyncEntriesUpdateMsg {
  return {
    full: false,
    entries: [],
    deleted_entry_ids: [],
    bundle: Buffer.alloc(0),
    federated_bundles: {},
    federated_changed: false,
    tainted_authority_ids: [],
    agent_state: 'AGENT_STATE_OK',
    ...u,
  };
}

type Handler = grpc.UntypedHandleCall;

export interface NodeApiDoubleOptions {
  pki: TestPki;
  port?: number;
  /** Require (and verify against the PKI) a client certificate on every call. Default true. */
  requireClientCert?: boolean;
  /** The server SVID's SPIFFE ID; default spiffe://<td>/emblem/server. */
  serverSpiffeId?: string;
  /** Handlers by RPC name (AttestAgent, RenewAgent, SyncEntries, BatchNewX509SVID, NewJWTSVID). */
  handlers?: Record<string, Handler>;
}

/** A node.proto server double. SyncEntries streams are kept open; tests push updates into them. */
export class NodeApiDouble {
  readonly syncRequests: SyncEntriesRequestMsg[] = [];
  /** SPIFFE IDs of the client certificates seen on SyncEntries / BatchNewX509SVID. */
  readonly clientIds: string[] = [];
  readonly streams = new Set<grpc.ServerWritableStream<SyncEntriesRequestMsg, SyncEntriesUpdateMsg>>();
  /** Entries BatchNewX509SVID signs for: entry ID → SPIFFE ID. */
  readonly signable = new Map<string, string>();
  authorityId = 'authority-1';
  x509TtlSeconds = 3600;
  batchCalls = 0;
  /** Answer for the next SyncEntries call, before the stream stays open (e.g. a full update). */
  onSync: ((req: SyncEntriesRequestMsg, stream: grpc.ServerWritableStream<SyncEntriesRequestMsg, SyncEntriesUpdateMsg>) => void) | undefined;
  private waiters: (() => void)[] = [];

  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(options: NodeApiDoubleOptions): Promise<NodeApiDouble> {
    const { pki } = options;
    const server = new grpc.Server();
    const serverIdentity = pki.identity(options.serverSpiffeId ?? serverId(pki.trustDomain));
    const credentials = grpc.ServerCredentials.createSsl(
      Buffer.from(certificatesToPem([pki.caDer])),
      [{ cert_chain: Buffer.from(certificatesToPem(serverIdentity.chain)), private_key: Buffer.from(serverIdentity.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string) }],
      options.requireClientCert ?? true,
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    const double = new NodeApiDouble(server, port);
    const unimplemented: Handler = ((call: { emit?: (e: string, v: unknown) => void }, cb?: (err: unknown) => void) => {
      const err = { code: grpc.status.UNIMPLEMENTED, details: 'not in this test double' };
      if (cb) cb(err);
      else call.emit?.('error', err);
    }) as Handler;
    server.addService(nodeService().service, {
      AttestAgent: unimplemented,
      RenewAgent: unimplemented,
      NewJWTSVID: unimplemented,
      SyncEntries: ((call: grpc.ServerWritableStream<SyncEntriesRequestMsg, SyncEntriesUpdateMsg>) => double.handleSync(call)) as Handler,
      BatchNewX509SVID: ((call: grpc.ServerUnaryCall<{ params: { entry_id: string; csr: Buffer }[] }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
        double.handleBatch(pki, call, cb)) as Handler,
      ...options.handlers,
    });
    return double;
  }

  /** Writes an update to every open sync stream. */
  push(update: SyncEntriesUpdateMsg): void {
    for (const s of this.streams) s.write(update);
  }

  /** Resolves once at least `n` SyncEntries calls have been received in total. */
  async waitForSyncCalls(n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.syncRequests.length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} sync calls (got ${this.syncRequests.length})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 20);
      });
    }
  }

  /** Ends every open sync stream with an error status. */
  failStreams(code: grpc.status, details: string): void {
    for (const s of this.streams) s.emit('error', { code, details });
    this.streams.clear();
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.end();
    this.streams.clear();
    this.server.forceShutdown();
  }

  private recordClient(call: { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } | null }): void {
    const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
    if (raw) this.clientIds.push(readCertificate(raw).uris[0] ?? '');
  }

  private handleSync(call: grpc.ServerWritableStream<SyncEntriesRequestMsg, SyncEntriesUpdateMsg>): void {
    this.recordClient(call);
    this.syncRequests.push(call.request);
    this.streams.add(call);
    call.on('cancelled', () => this.streams.delete(call));
    call.on('close', () => this.streams.delete(call));
    this.onSync?.(call.request, call);
    for (const w of this.waiters.splice(0)) w();
  }

  private handleBatch(
    pki: TestPki,
    call: grpc.ServerUnaryCall<{ params: { entry_id: string; csr: Buffer }[] }, unknown>,
    cb: grpc.sendUnaryData<unknown>,
  ): void {
    this.recordClient(call);
    this.batchCalls++;
    const results = call.request.params.map((p) => {
      const spiffeId = this.signable.get(p.entry_id);
      if (!spiffeId) {
        return { entry_id: p.entry_id, status: { code: grpc.status.PERMISSION_DENIED, message: 'entry is not authorised for this agent' } };
      }
      const chain = pki.mint(spiffeId, parseCsr(p.csr).publicKey, this.x509TtlSeconds);
      return {
        entry_id: p.entry_id,
        status: { code: 0, message: '' },
        svid_chain: concatDer(chain),
        expires_at: readCertificate(chain[0]!).notAfter,
        authority_id: this.authorityId,
      };
    });
    cb(null, { results });
  }
}

/** Polls `check` until it returns true (for effects that cross the network). */
export async function eventually(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
