// Fresh SVID key pairs, each with its CSR, made ahead of need while the agent is quiet.
//
// Generating a P-256 key and signing its CSR costs ~150 µs of CPU, so re-keying 1,000 SVIDs at once
// (an authority was tainted) would spend ~150 ms before the first CSR leaves for the server. With
// the pool, a re-key takes ready keys and only waits for the server. Every key is still used once:
// a pooled key is handed out to one SVID and forgotten here. Keys live in memory only, like the
// keys of the SVIDs themselves; nothing is written to disk or logged.
import { createCsr } from '../../common/x509/csr.js';
import { exportPkcs8Der, exportSpkiDer, generateP256PrivateKey } from '../../common/x509/keys.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';

/** A key pair as the minter needs it: the CSR to send and the DER it stores and serves. */
export interface PreparedKey {
  /** Unencrypted PKCS#8 DER: what the Workload API hands out as x509_svid_key. */
  readonly privateKeyPkcs8: Buffer;
  /** SubjectPublicKeyInfo DER: the issued leaf must certify exactly this key. */
  readonly spki: Buffer;
  /** DER PKCS#10 request signed with the private key (proof of possession). */
  readonly csr: Buffer;
}

export interface KeyPoolOptions {
  /** How many keys to keep ready; read before each refill (e.g. the number of authorised entries). */
  target: () => number;
  /** Upper bound on `target()`. Default 1,000 (about 0.5 MB). */
  maxSize?: number;
  /** Refill starts once no key was taken for this long. Default 1,000 ms. */
  quietMs?: number;
  /** Keys made per event-loop turn while refilling. Default 20 (a few ms of CPU). */
  chunk?: number;
  clock?: Clock;
}

export const DEFAULT_MAX_POOLED_KEYS = 1000;

/** Generates one key pair and its CSR now. */
export function prepareKey(): PreparedKey {
  const privateKey = generateP256PrivateKey();
  return { privateKeyPkcs8: exportPkcs8Der(privateKey), spki: exportSpkiDer(privateKey), csr: createCsr({ privateKey }) };
}

export class KeyPool {
  private readonly ready: PreparedKey[] = [];
  private readonly maxSize: number;
  private readonly quietMs: number;
  private readonly chunk: number;
  private readonly clock: Clock;
  private quietTimer: TimerHandle | undefined;
  private filling = false;
  private stopped = false;

  constructor(private readonly opts: KeyPoolOptions) {
    this.maxSize = opts.maxSize ?? DEFAULT_MAX_POOLED_KEYS;
    this.quietMs = opts.quietMs ?? 1000;
    this.chunk = Math.max(1, opts.chunk ?? 20);
    this.clock = opts.clock ?? systemClock;
  }

  get size(): number {
    return this.ready.length;
  }

  /** A key nobody else gets: from the pool if one is ready, else made now. */
  take(): PreparedKey {
    const key = this.ready.pop() ?? prepareKey();
    this.refillWhenQuiet();
    return key;
  }

  /** Schedules a refill for when the agent has been quiet for a while (also after start-up). */
  refillWhenQuiet(): void {
    if (this.stopped) return;
    this.quietTimer?.cancel();
    this.quietTimer = this.clock.setTimer(() => {
      this.quietTimer = undefined;
      this.fill();
    }, this.quietMs);
  }

  /** Drops the ready keys and stops refilling. */
  stop(): void {
    this.stopped = true;
    this.quietTimer?.cancel();
    this.quietTimer = undefined;
    this.ready.length = 0;
  }

  private wanted(): number {
    return Math.max(0, Math.min(this.opts.target(), this.maxSize));
  }

  /** Adds keys a chunk per event-loop turn, pausing whenever keys are being taken. */
  private fill(): void {
    if (this.filling || this.stopped) return;
    this.filling = true;
    const step = (): void => {
      // A take() in between re-arms the quiet timer: leave the CPU to whatever is taking keys.
      if (this.stopped || this.quietTimer) {
        this.filling = false;
        return;
      }
      const wanted = this.wanted();
      if (this.ready.length > wanted) this.ready.length = wanted;
      for (let i = 0; i < this.chunk && this.ready.length < wanted; i++) this.ready.push(prepareKey());
      if (this.ready.length >= wanted) {
        this.filling = false;
        return;
      }
      setImmediate(step);
    };
    step();
  }
}
