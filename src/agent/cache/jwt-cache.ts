// JWT-SVIDs minted by the server on demand, cached by (entry, audience set) in a bounded LRU and
// reused while more than half of their lifetime is left. Concurrent requests for the same key share
// one server call.
import type { JwtSvid } from './types.js';

export type JwtMinter = (entryId: string, audience: string[]) => Promise<JwtSvid>;

interface Cached {
  svid: JwtSvid;
  /** Unix seconds (agent clock) when the token arrived. */
  receivedAt: number;
}

export interface JwtSvidCacheOptions {
  mint: JwtMinter;
  /** Most tokens kept; the least recently used one goes first. Default 1000. */
  maxSize?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

export const DEFAULT_JWT_CACHE_SIZE = 1000;

/** Sorted, de-duplicated audience: the order in a request does not make a different token. */
/** A stale token is served on mint failure only while it has at least this long left. */
const STALE_MARGIN_SECONDS = 5;

export function normaliseAudience(audience: readonly string[]): string[] {
  return [...new Set(audience)].sort();
}

export class JwtSvidCache {
  private readonly tokens = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<JwtSvid>>();
  /** Bumped when an entry's tokens are dropped, so a mint already in flight is not cached. */
  private readonly epochs = new Map<string, number>();
  /** Bumped by clear(). */
  private generation = 0;
  private readonly maxSize: number;
  private readonly now: () => number;

  constructor(private readonly options: JwtSvidCacheOptions) {
    this.maxSize = options.maxSize ?? DEFAULT_JWT_CACHE_SIZE;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.tokens.size;
  }

  fetch(entryId: string, audience: readonly string[]): Promise<JwtSvid> {
    const aud = normaliseAudience(audience);
    const key = entryId + '\n' + JSON.stringify(aud);
    const cached = this.tokens.get(key);
    const nowSec = this.now() / 1000;
    if (cached) {
      const lifetime = cached.svid.expiresAt - cached.receivedAt;
      if (cached.svid.expiresAt - nowSec > lifetime / 2) {
        this.tokens.delete(key);
        this.tokens.set(key, cached);
        return Promise.resolve(cached.svid);
      }
    }
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const epoch = this.epochs.get(entryId) ?? 0;
    const generation = this.generation;
    const request = this.options
      .mint(entryId, aud)
      .then((svid) => {
        const current = (this.epochs.get(entryId) ?? 0) === epoch && this.generation === generation;
        if (current) this.remember(key, { svid, receivedAt: Math.min(this.now() / 1000, svid.expiresAt) });
        return svid;
      })
      .catch((err: unknown) => {
        // Past half-life a fresh token is preferred, but while the server cannot be reached a
        // token that has not expired yet is still better than no token.
        const stale = this.tokens.get(key);
        if (stale && stale.svid.expiresAt > this.now() / 1000 + STALE_MARGIN_SECONDS) return stale.svid;
        this.tokens.delete(key);
        throw err;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, request);
    return request;
  }

  /** Forgets the tokens of an entry (deleted or changed). */
  dropEntry(entryId: string): void {
    this.epochs.set(entryId, (this.epochs.get(entryId) ?? 0) + 1);
    const prefix = entryId + '\n';
    for (const key of this.tokens.keys()) if (key.startsWith(prefix)) this.tokens.delete(key);
  }

  clear(): void {
    this.generation++;
    this.epochs.clear();
    this.tokens.clear();
  }

  private remember(key: string, value: Cached): void {
    this.tokens.delete(key);
    this.tokens.set(key, value);
    while (this.tokens.size > this.maxSize) {
      const oldest = this.tokens.keys().next().value as string;
      this.tokens.delete(oldest);
    }
  }
}
