// The agent's client of the server's Node API. It owns one mutual-TLS channel (the agent SVID as
// client certificate, the server verified against the trust anchors) and replaces it whenever the
// agent SVID or the trust anchors change; listeners hear about the swap so long-lived streams can
// reopen on the new channel. AttestAgent goes over a separate short-lived channel without a client
// certificate.
//
// Trust anchors: the bootstrap trust bundle (--trust-bundle) until the first bundle arrives from the
// server, then the latest bundle received. --insecure-bootstrap applies only while neither exists.
import { connectivityState, type ChannelInterface, type ChannelOptions, type Client, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { EmblemError, failedPrecondition } from '../../common/errors.js';
import { nodeService } from '../../common/grpc/proto.js';
import { fromGrpcError } from '../../common/grpc/status.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { splitDerCertificates } from '../../common/x509/chain.js';
import type { JwtSvid } from '../cache/types.js';
import type {
  AttestAgentRequestMsg,
  AttestAgentResponseMsg,
  SyncEntriesRequestMsg,
  SyncEntriesUpdateMsg,
  X509SvidParamsMsg,
  X509SvidResultMsg,
} from './messages.js';
import {
  probeServerIdentity,
  serverChannelCredentials,
  serverNameOptions,
  type ClientTlsIdentity,
  type ServerTrust,
} from './tls-credentials.js';

export const DEFAULT_RPC_TIMEOUT_MS = 30_000;

/** Keepalive: a dead server (or a silently dropped connection) is noticed within ~40 s. */
export const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // A full sync of a large entry set can exceed gRPC's 4 MiB default.
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
  // While the server is unreachable the channel retries a TCP connect about twice a second (cheap
  // for both sides), so an agent is back within ~0.6 s of the server returning. RPC and stream
  // retries keep their own, longer backoff; onReconnected() lets them skip it.
  'grpc.initial_reconnect_backoff_ms': 500,
  'grpc.max_reconnect_backoff_ms': 500,
};

export type AttestStream = ClientDuplexStream<AttestAgentRequestMsg, AttestAgentResponseMsg>;

/** What node attestation needs from a transport. */
export interface AttestTransport {
  readonly trustDomain: string;
  /** Opens AttestAgent without a client certificate; the stream's channel closes when it ends. */
  openAttestStream(): Promise<AttestStream>;
}

export interface ServerClientOptions {
  serverAddress: string;
  trustDomain: string;
  /** X.509 authorities of the bootstrap trust bundle (--trust-bundle). */
  bootstrapAnchors?: Buffer[];
  insecureBootstrap?: boolean;
  rpcTimeoutMs?: number;
  logger?: Logger;
  /** Extra channel options (tests). */
  channelOptions?: ChannelOptions;
}

type NodeStub = Client & Record<string, (...args: unknown[]) => unknown>;

type Unary = (req: object, options: { deadline: Date }, cb: (err: ServiceError | null, res: unknown) => void) => unknown;

export class ServerClient implements AttestTransport {
  readonly trustDomain: string;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly options: ChannelOptions;
  private latestAnchors: Buffer[] | undefined;
  private identity: ClientTlsIdentity | undefined;
  private stub: NodeStub | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly reconnectWaiters = new Set<() => void>();
  private watchedChannel: ChannelInterface | undefined;
  private closed = false;

  constructor(private readonly opts: ServerClientOptions) {
    this.trustDomain = opts.trustDomain;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'server-client' });
    this.timeoutMs = opts.rpcTimeoutMs ?? DEFAULT_RPC_TIMEOUT_MS;
    this.options = { ...CHANNEL_OPTIONS, ...serverNameOptions(opts.serverAddress), ...opts.channelOptions };
  }

  get serverAddress(): string {
    return this.opts.serverAddress;
  }

  /** The latest bundle received from the server; its authorities replace the bootstrap anchors. */
  setBundle(bundle: TrustBundle): void {
    this.update({ bundle });
  }

  /** The agent's current SVID, presented as client certificate. */
  setAgentSvid(identity: ClientTlsIdentity): void {
    this.update({ agentSvid: identity });
  }

  /** Changes the SVID and/or the anchors with one channel replacement. */
  update(change: { agentSvid?: ClientTlsIdentity; bundle?: TrustBundle }): void {
    let changed = false;
    if (change.bundle) {
      const anchors = change.bundle.x509Authorities;
      if (anchors.length === 0) this.log.warn('ignoring a bundle without X.509 authorities for server authentication');
      else {
        // The first bundle usually holds the bootstrap anchors: no new channel is needed for that.
        const effective = this.latestAnchors ?? this.opts.bootstrapAnchors;
        if (!effective || !sameCertificates(effective, anchors)) changed = true;
        this.latestAnchors = [...anchors];
      }
    }
    if (change.agentSvid) {
      this.identity = { chain: [...change.agentSvid.chain], privateKey: change.agentSvid.privateKey };
      changed = true;
    }
    if (changed) this.rebuild();
  }

  /** Called after the mTLS channel was replaced (new SVID or new anchors). Returns an unsubscribe function. */
  onChannelChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Calls `listener` once, the next time the channel becomes connected after not being connected
   * (the server is back). A channel that is connected now does not call it: a failure on a live
   * connection came from the server, which deserves the caller's backoff. Returns a cancel function.
   */
  onReconnected(listener: () => void): () => void {
    this.reconnectWaiters.add(listener);
    this.watchConnection();
    try {
      this.stub?.getChannel().getConnectivityState(true); // an idle channel starts connecting
    } catch {
      // closed channel: rebuild() or close() already took over
    }
    return () => {
      this.reconnectWaiters.delete(listener);
    };
  }

  async openAttestStream(): Promise<AttestStream> {
    this.checkOpen();
    const trust = this.trust();
    if (trust.kind === 'insecure') {
      this.log.warn('insecure bootstrap: the server certificate chain is NOT verified for this attestation');
      await probeServerIdentity(this.opts.serverAddress, this.trustDomain);
    }
    const stub = this.newStub(trust, undefined);
    const stream = (stub.AttestAgent as () => AttestStream)();
    let channelOpen = true;
    const closeChannel = (): void => {
      if (channelOpen) stub.close();
      channelOpen = false;
    };
    stream.once('status', closeChannel);
    stream.once('error', () => setImmediate(closeChannel));
    return stream;
  }

  async renewAgent(csr: Buffer): Promise<Buffer[]> {
    const res = (await this.unary('RenewAgent', { csr })) as { svid_chain: Buffer };
    return splitDerCertificates(res.svid_chain);
  }

  syncEntries(request: SyncEntriesRequestMsg): ClientReadableStream<SyncEntriesUpdateMsg> {
    const stub = this.requireStub();
    return (stub.SyncEntries as (req: object) => ClientReadableStream<SyncEntriesUpdateMsg>)(request);
  }

  async batchNewX509Svid(params: X509SvidParamsMsg[]): Promise<X509SvidResultMsg[]> {
    const res = (await this.unary('BatchNewX509SVID', { params })) as { results: X509SvidResultMsg[] };
    if (res.results.length !== params.length) {
      throw new EmblemError('internal', `server answered ${res.results.length} results for ${params.length} CSRs`);
    }
    return res.results;
  }

  async newJwtSvid(entryId: string, audience: string[]): Promise<JwtSvid> {
    const res = (await this.unary('NewJWTSVID', { entry_id: entryId, audience })) as { token: string; expires_at: number };
    if (!res.token) throw new EmblemError('internal', 'server returned an empty JWT-SVID');
    return { token: res.token, expiresAt: res.expires_at };
  }

  /** True once the mTLS channel exists (the agent has an SVID and trust anchors). */
  isConnected(): boolean {
    return this.stub !== undefined;
  }

  close(): void {
    this.closed = true;
    this.stub?.close();
    this.stub = undefined;
    this.listeners.clear();
    this.reconnectWaiters.clear();
  }

  /** One connectivity watcher per channel, for as long as the channel lives. */
  private watchConnection(): void {
    const channel = this.stub?.getChannel();
    if (!channel || this.watchedChannel === channel) return;
    this.watchedChannel = channel;
    let last: connectivityState | undefined;
    const step = (): void => {
      if (this.watchedChannel !== channel) return;
      try {
        const state = channel.getConnectivityState(this.reconnectWaiters.size > 0);
        if (state === connectivityState.SHUTDOWN) throw new Error('channel shut down');
        const reconnected = state === connectivityState.READY && last !== undefined && last !== connectivityState.READY;
        last = state;
        if (reconnected && this.reconnectWaiters.size > 0) {
          const waiters = [...this.reconnectWaiters];
          this.reconnectWaiters.clear();
          for (const waiter of waiters) waiter();
        }
        channel.watchConnectivityState(state, Infinity, step);
      } catch {
        if (this.watchedChannel === channel) this.watchedChannel = undefined;
      }
    };
    step();
  }

  private trust(): ServerTrust {
    const anchors = this.latestAnchors ?? this.opts.bootstrapAnchors;
    if (anchors && anchors.length > 0) return { kind: 'anchors', anchors };
    if (this.opts.insecureBootstrap) return { kind: 'insecure' };
    throw failedPrecondition('no trust bundle to authenticate the server: give --trust-bundle (or --insecure-bootstrap)');
  }

  private newStub(trust: ServerTrust, client: ClientTlsIdentity | undefined): NodeStub {
    const Ctor = nodeService();
    return new Ctor(this.opts.serverAddress, serverChannelCredentials(this.trustDomain, trust, client), this.options) as unknown as NodeStub;
  }

  private rebuild(): void {
    if (this.closed || !this.identity) return;
    const trust = this.trust();
    if (trust.kind === 'insecure') return; // mTLS RPCs always verify the server
    const old = this.stub;
    this.stub = this.newStub(trust, this.identity);
    if (this.reconnectWaiters.size > 0) this.watchConnection();
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (err) {
        this.log.error({ err }, 'channel change listener failed');
      }
    }
    old?.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new EmblemError('unavailable', 'server client is closed');
  }

  private requireStub(): NodeStub {
    this.checkOpen();
    if (!this.stub) throw new EmblemError('unavailable', 'not connected to the server: the agent has no SVID or no trust bundle yet');
    return this.stub;
  }

  private unary(method: string, request: object): Promise<unknown> {
    const stub = this.requireStub();
    const fn = stub[method] as unknown as Unary;
    return new Promise((resolve, reject) => {
      fn.call(stub, request, { deadline: new Date(Date.now() + this.timeoutMs) }, (err, res) => {
        if (err) reject(fromGrpcError(err));
        else resolve(res);
      });
    });
  }
}

function sameCertificates(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((der, i) => der.equals(b[i]!));
}
