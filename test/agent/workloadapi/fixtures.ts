// Shared by the Workload API tests: real PKI (CA, SVIDs, JWT keys), an in-memory identity source,
// and a real grpc server on a temporary Unix socket with a client built from workloadApiService().
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { AgentEntry, JwtSvid, WorkloadIdentitySource, X509Identity } from '../../../src/agent/cache/types.js';
import type { TrustBundle } from '../../../src/common/trust-bundle.js';
import { permissionDenied } from '../../../src/common/errors.js';
import { workloadApiService } from '../../../src/common/grpc/proto.js';
import { silentLogger } from '../../../src/common/logger.js';
import { isSubset } from '../../../src/common/selectors.js';
import { jwkThumbprintKid, mintJwtSvid } from '../../../src/common/jwt-svid.js';
import { createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { prepareIssuer, type Issuer } from '../../../src/common/x509/issuer.js';
import { mintX509Svid } from '../../../src/common/x509/leaf.js';
import { exportPkcs8Der, generateKeyPair } from '../../../src/common/x509/keys.js';
import { addWorkloadApi, type IdentifyCaller, type WorkloadApiDeps } from '../../../src/agent/workloadapi/service.js';
import { addHealthAndReflection } from '../../../src/agent/workloadapi/health-reflection.js';

export const TD = 'example.org';

export interface Pki {
  trustDomain: string;
  issuer: Issuer;
  caDer: Buffer;
  jwtKey: KeyObject;
  kid: string;
  bundle: TrustBundle;
}

export async function makePki(trustDomain: string, extraCas = 0): Promise<Pki> {
  const keyPair = generateKeyPair();
  const caDer = createSelfSignedCa({ trustDomain, keyPair, ttlSeconds: 3600 });
  const extra = Array.from({ length: extraCas }, () =>
    createSelfSignedCa({ trustDomain, keyPair: generateKeyPair(), ttlSeconds: 3600 }),
  );
  const jwt = generateKeyPair();
  const kid = await jwkThumbprintKid(jwt.publicKey);
  const bundle: TrustBundle = {
    trustDomain,
    x509Authorities: [caDer, ...extra],
    jwtAuthorities: [{ kid, publicKey: jwt.publicKey.export({ format: 'jwk' }) }],
    sequence: 1,
  };
  return { trustDomain, issuer: prepareIssuer(caDer, keyPair.privateKey), caDer, jwtKey: jwt.privateKey, kid, bundle };
}

export function mintIdentity(pki: Pki, entry: AgentEntry): X509Identity {
  const keys = generateKeyPair();
  const svid = mintX509Svid(pki.issuer, { spiffeId: entry.spiffeId, publicKey: keys.publicKey, ttlSeconds: 600 });
  return {
    entry,
    chain: [svid.der],
    privateKeyPkcs8: exportPkcs8Der(keys.privateKey),
    notAfter: svid.notAfter,
    authorityId: pki.kid,
  };
}

let entrySeq = 0;
export function makeEntry(path: string, selectors: string[], extra: Partial<AgentEntry> = {}): AgentEntry {
  entrySeq++;
  return {
    id: extra.id ?? `entry-${String(entrySeq).padStart(4, '0')}`,
    spiffeId: `spiffe://${TD}${path}`,
    parentId: `spiffe://${TD}/emblem/agent/test`,
    selectors: selectors.map((s) => {
      const i = s.indexOf(':');
      return { type: s.slice(0, i), value: s.slice(i + 1) };
    }),
    federatesWith: [],
    hint: '',
    jwtSvidTtl: 300,
    createdAt: entrySeq,
    revision: 1,
    ...extra,
  };
}

/** An in-memory WorkloadIdentitySource whose state the test changes, then calls notify(). */
export class FakeSource implements WorkloadIdentitySource {
  isReady = true;
  entries: AgentEntry[] = [];
  identities = new Map<string, X509Identity>();
  ownBundle: TrustBundle | undefined;
  federated = new Map<string, TrustBundle>();
  jwtCalls: Array<{ entryId: string; audience: string[] }> = [];
  private readonly listeners = new Set<() => void>();

  constructor(readonly pki: Pki) {
    this.ownBundle = pki.bundle;
  }

  get liveSubscriptions(): number {
    return this.listeners.size;
  }

  /** Adds an entry with a freshly minted SVID (unless mint is false). */
  add(entry: AgentEntry, mint = true): AgentEntry {
    this.entries.push(entry);
    if (mint) this.identities.set(entry.id, mintIdentity(this.pki, entry));
    return entry;
  }

  rotate(entryId: string): X509Identity {
    const entry = this.entries.find((e) => e.id === entryId);
    if (!entry) throw new Error(`no entry ${entryId}`);
    const identity = mintIdentity(this.pki, entry);
    this.identities.set(entryId, identity);
    return identity;
  }

  remove(entryId: string): void {
    this.entries = this.entries.filter((e) => e.id !== entryId);
    this.identities.delete(entryId);
  }

  notify(): void {
    for (const l of [...this.listeners]) l();
  }

  ready(): boolean {
    return this.isReady;
  }

  entriesFor(workloadSelectors: ReadonlySet<string>): AgentEntry[] {
    return this.entries
      .filter((e) => isSubset(e.selectors, workloadSelectors))
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  x509Identity(entryId: string): X509Identity | undefined {
    return this.identities.get(entryId);
  }

  bundle(): TrustBundle | undefined {
    return this.ownBundle;
  }

  federatedBundles(): ReadonlyMap<string, TrustBundle> {
    return this.federated;
  }

  async fetchJwtSvid(entryId: string, audience: string[]): Promise<JwtSvid> {
    const entry = this.entries.find((e) => e.id === entryId);
    if (!entry) throw new Error(`no entry ${entryId}`);
    this.jwtCalls.push({ entryId, audience });
    return mintJwtSvid({ privateKey: this.pki.jwtKey, kid: this.pki.kid, spiffeId: entry.spiffeId, audience, ttlSeconds: 300 });
  }

  onChange(listener: () => void): () => void {
    const wrapped = (): void => listener();
    this.listeners.add(wrapped);
    return () => this.listeners.delete(wrapped);
  }
}

/** Test identification: the caller names itself in `x-test-workload` metadata; `callers` maps names to selectors. */
export const CALLER_HEADER = 'x-test-workload';

export function identifyByHeader(callers: Map<string, string[]>): IdentifyCaller & { calls: number } {
  const fn = Object.assign(
    async (call: Parameters<IdentifyCaller>[0]) => {
      fn.calls++;
      const name = String(call.metadata.get(CALLER_HEADER)[0] ?? '');
      const selectors = callers.get(name);
      if (!selectors) throw permissionDenied('unknown caller');
      return { selectorKeys: new Set(selectors), pid: 4242 };
    },
    { calls: 0 },
  );
  return fn;
}

export interface Harness {
  client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  server: grpc.Server;
  address: string;
  close(): Promise<void>;
}

export async function startHarness(deps: Partial<WorkloadApiDeps> & Pick<WorkloadApiDeps, 'source' | 'identify'>): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'emblem-wlapi-'));
  const address = `unix://${join(dir, 'api.sock')}`;
  const server = new grpc.Server();
  addWorkloadApi(server, { trustDomain: TD, logger: silentLogger(), ...deps });
  addHealthAndReflection(server, { source: deps.source, logger: silentLogger() });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  const Client = workloadApiService();
  const client = new Client(address, grpc.credentials.createInsecure()) as Harness['client'];
  return {
    client,
    server,
    address,
    async close() {
      client.close();
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Metadata with the security header (unless header is null) and the test caller name. */
export function md(caller?: string, header: string | null = 'true'): grpc.Metadata {
  const m = new grpc.Metadata();
  if (header !== null) m.set('workload.spiffe.io', header);
  if (caller !== undefined) m.set(CALLER_HEADER, caller);
  return m;
}

export interface StreamResult<T> {
  messages: T[];
  error?: grpc.ServiceError;
}

/** Collects a stream's messages until it ends with an error (or `until` says stop, then cancels). */
export function collect<T>(
  call: grpc.ClientReadableStream<T>,
  until?: (messages: T[]) => boolean,
): Promise<StreamResult<T>> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    let done = false;
    const finish = (error?: grpc.ServiceError): void => {
      if (done) return;
      done = true;
      resolve({ messages, error });
    };
    call.on('data', (m: T) => {
      messages.push(m);
      if (until?.(messages)) {
        finish();
        call.cancel();
      }
    });
    call.on('error', (err: grpc.ServiceError) => finish(err));
    call.on('end', () => finish());
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until the predicate holds (polling), or fails after `ms`. */
export async function eventually(pred: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export function unary<Res>(client: Harness['client'], method: string, req: unknown, meta: grpc.Metadata): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method].call(client, req, meta, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** Opens a server stream on the harness client. */
export function open<T>(client: Harness['client'], method: string, meta: grpc.Metadata): grpc.ClientReadableStream<T> {
  return client[method].call(client, {}, meta) as grpc.ClientReadableStream<T>;
}

export { silentLogger };
