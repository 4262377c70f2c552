// Per-source rate limiting of attestation attempts (a token bucket per remote address), so join
// tokens cannot be guessed at speed and x509pop handshakes cannot be used to burn CPU.
import { resourceExhausted } from '../../common/errors.js';

export interface RateLimiter {
  /** Throws resource_exhausted when `key` has no attempt left. */
  take(key: string): void;
}

export function createRateLimiter(perMinute: number, now: () => number = Date.now): RateLimiter {
  const buckets = new Map<string, { tokens: number; updated: number }>();
  const refillPerMs = perMinute / 60_000;
  let lastSweep = now();
  return {
    take(key) {
      const t = now();
      if (t - lastSweep > 60_000) {
        for (const [k, b] of buckets) if (b.tokens + (t - b.updated) * refillPerMs >= perMinute) buckets.delete(k);
        lastSweep = t;
      }
      const bucket = buckets.get(key) ?? { tokens: perMinute, updated: t };
      bucket.tokens = Math.min(perMinute, bucket.tokens + (t - bucket.updated) * refillPerMs);
      bucket.updated = t;
      if (bucket.tokens < 1) {
        buckets.set(key, bucket);
        throw resourceExhausted('too many attestation attempts from this address; retry later');
      }
      bucket.tokens -= 1;
      buckets.set(key, bucket);
    },
  };
}
