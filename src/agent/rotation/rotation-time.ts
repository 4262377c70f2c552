// When to renew an SVID: at half its lifetime, with the half-life threshold jittered by ±10% so
// that SVIDs minted together do not all come back to the server at the same moment.

export const ROTATION_JITTER = 0.1;

/**
 * Renewal time in milliseconds for a certificate valid from `notBefore` to `notAfter` (Unix
 * seconds): notBefore + lifetime/2 × (1 ± 10%). `random` returns a number in [0, 1).
 */
export function rotationTimeMs(notBefore: number, notAfter: number, random: () => number = Math.random): number {
  const lifetimeMs = Math.max(0, notAfter - notBefore) * 1000;
  const factor = 1 + (random() * 2 - 1) * ROTATION_JITTER;
  return notBefore * 1000 + (lifetimeMs / 2) * factor;
}

/** Capped exponential backoff with jitter: attempt 0 → about `initialMs`, doubling up to `maxMs`. */
export function backoffDelayMs(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  // Equal jitter: half fixed, half random, so retries never bunch up and never collapse to zero.
  return base / 2 + random() * (base / 2);
}
