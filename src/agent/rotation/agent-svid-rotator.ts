// Keeps the agent's own SVID fresh: renewal at half its lifetime ±10%, with a fresh key each time.
// Join-token agents call RenewAgent (mTLS with the current SVID); x509pop agents re-attest. The new
// SVID is persisted before it is used, then the server channel is rebuilt with it (which restarts
// the sync stream). Failures retry with backoff. An expired SVID ends a join-token agent
// (reason 'svid_expired': it cannot re-attest with its spent token); an x509pop agent re-attests.
import { EmblemError, errorMessage } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { exportPkcs8Der } from '../../common/x509/keys.js';
import { agentSvidValidity, attestWithNewKey, checkAgentSvid, newAgentKeyRequest } from '../attestation/agent-svid.js';
import { AgentSvidExpiredError, joinTokenExpiredMessage } from '../attestation/bootstrap.js';
import type { NodeAttestor } from '../attestation/node-attestation.js';
import type { AttestTransport } from '../client/server-client.js';
import type { ClientTlsIdentity } from '../client/tls-credentials.js';
import { terminationFromError, terminationMessage, type TerminationReason } from '../client/termination.js';
import type { AgentStore, StoredAgentSvid } from '../storage/agent-store.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { backoffDelayMs, rotationTimeMs } from './rotation-time.js';
import { loggableId } from '../../common/spiffe-id.js';

export type AgentStopReason = TerminationReason | 'svid_expired';

export interface AgentSvidTransport extends AttestTransport {
  renewAgent(csr: Buffer): Promise<Buffer[]>;
  update(change: { agentSvid?: ClientTlsIdentity; bundle?: TrustBundle }): void;
}

export interface AgentSvidRotatorOptions {
  transport: AgentSvidTransport;
  store: Pick<AgentStore, 'saveAgentSvid' | 'saveBundle'>;
  /** x509pop agents: the attestor, or a function that reads it afresh (certificates rotate on disk too). */
  attestor?: NodeAttestor | (() => NodeAttestor);
  /** After each renewal (the bundle is present when the agent re-attested). */
  onRenewed?: (svid: StoredAgentSvid, bundle?: TrustBundle) => void;
  /** The agent cannot go on: stop serving and exit non-zero. */
  onTerminated: (reason: AgentStopReason, message: string) => void;
  retry?: { initialMs: number; maxMs: number };
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
}

export class AgentSvidRotator {
  private svid: StoredAgentSvid | undefined;
  private timer: TimerHandle | undefined;
  private due: number | undefined;
  private renewing: Promise<boolean> | undefined;
  private failures = 0;
  private stopped = false;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly retry: { initialMs: number; maxMs: number };

  constructor(private readonly opts: AgentSvidRotatorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'agent-svid' });
    this.retry = opts.retry ?? { initialMs: 1_000, maxMs: 60_000 };
  }

  /** Takes the current SVID (already given to the transport) and schedules its renewal. */
  start(svid: StoredAgentSvid): void {
    this.svid = svid;
    this.scheduleRotation();
  }

  current(): StoredAgentSvid | undefined {
    return this.svid;
  }

  /** When the next renewal attempt is due (clock ms). */
  nextAttemptAt(): number | undefined {
    return this.due;
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.due = undefined;
  }

  /** Renews now; resolves true on success (concurrent calls share one attempt). */
  renewNow(): Promise<boolean> {
    this.renewing ??= this.renew().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private setTimer(at: number): void {
    this.timer?.cancel();
    this.due = at;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.due = undefined;
      void this.renewNow();
    }, at - this.clock.now());
  }

  private scheduleRotation(): void {
    if (this.stopped || !this.svid) return;
    const { notBefore, notAfter } = agentSvidValidity(this.svid);
    this.setTimer(rotationTimeMs(notBefore, notAfter, this.random));
  }

  private async renew(): Promise<boolean> {
    const current = this.svid;
    if (this.stopped || !current) return false;
    try {
      const { svid, bundle } = await this.obtain(current);
      if (this.stopped) return false;
      if (bundle) await this.opts.store.saveBundle(bundle);
      await this.opts.store.saveAgentSvid(svid);
      this.svid = svid;
      this.failures = 0;
      this.opts.transport.update({ agentSvid: { chain: svid.chain, privateKey: svid.privateKeyPkcs8 }, ...(bundle ? { bundle } : {}) });
      const { notAfter } = agentSvidValidity(svid);
      this.log.info({ agentId: loggableId(svid.agentId), expiresAt: notAfter }, 'agent SVID renewed');
      this.opts.onRenewed?.(svid, bundle);
      this.scheduleRotation();
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  private async obtain(current: StoredAgentSvid): Promise<{ svid: StoredAgentSvid; bundle?: TrustBundle }> {
    const expired = agentSvidValidity(current).notAfter * 1000 <= this.clock.now();
    if (current.attestationType === 'join_token') {
      if (expired) throw new AgentSvidExpiredError(joinTokenExpiredMessage(current.agentId));
      const { keyPair, csr } = newAgentKeyRequest();
      const chain = await this.opts.transport.renewAgent(csr);
      checkAgentSvid(chain, keyPair.publicKey, current.agentId);
      return { svid: { ...current, chain, privateKeyPkcs8: exportPkcs8Der(keyPair.privateKey) } };
    }
    const attestor = typeof this.opts.attestor === 'function' ? this.opts.attestor() : this.opts.attestor;
    if (!attestor || !('x509pop' in attestor)) {
      throw new EmblemError('failed_precondition', 'an x509pop agent needs its certificate and key (--x509pop-cert, --x509pop-key) to renew');
    }
    if (expired) this.log.warn('agent SVID has expired; re-attesting');
    const result = await attestWithNewKey(this.opts.transport, attestor);
    if (result.svid.agentId !== current.agentId) {
      this.log.warn({ from: current.agentId, to: result.svid.agentId }, 'the agent ID changed on re-attestation');
    }
    return result;
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const reason: AgentStopReason | undefined = err instanceof AgentSvidExpiredError ? 'svid_expired' : terminationFromError(err);
    if (reason) {
      const message = reason === 'svid_expired' ? errorMessage(err) : terminationMessage(reason);
      this.log.error({ reason }, message);
      this.stop();
      this.opts.onTerminated(reason, message);
      return;
    }
    const delay = backoffDelayMs(this.failures++, this.retry.initialMs, this.retry.maxMs, this.random);
    const now = this.clock.now();
    const notAfterMs = this.svid ? agentSvidValidity(this.svid).notAfter * 1000 : Infinity;
    // Before expiry, retry no later than the expiry itself, so an expired join-token agent stops
    // promptly and clearly; after expiry (x509pop re-attesting), just back off.
    const at = notAfterMs > now ? Math.min(now + delay, notAfterMs) : now + delay;
    this.log.warn({ reason: errorMessage(err), retryInMs: Math.round(at - now) }, 'agent SVID renewal failed; will retry');
    this.setTimer(at);
  }
}
