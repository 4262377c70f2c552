// Join tokens, stored by hash only, with an expiry index so pruning reads only expired tokens.
import { alreadyExists } from '../../../common/errors.js';
import type { Datastore } from '../types.js';
import type { StoreContext } from './context.js';
import {
  TOKEN_EXPIRY_PREFIX,
  hashOfTokenExpiryKey,
  requireKeyPart,
  requireTime,
  tokenExpiryKey,
  tokenKey,
} from './keys.js';

type TokenMethods = Pick<Datastore, 'createJoinToken' | 'consumeJoinToken' | 'pruneJoinTokens'>;

interface StoredToken {
  expiresAt: number;
}

export function tokenMethods(ctx: StoreContext): TokenMethods {
  return {
    createJoinToken: async (hash, expiresAt) => {
      requireKeyPart('join token hash', hash);
      requireTime('join token expiry', expiresAt);
      return ctx.write(async (tx) => {
        if ((await tx.get(tokenKey(hash))) !== undefined) throw alreadyExists('a join token with this hash already exists');
        const stored: StoredToken = { expiresAt };
        tx.put(tokenKey(hash), JSON.stringify(stored));
        tx.put(tokenExpiryKey(expiresAt, hash), '');
      });
    },

    consumeJoinToken: async (hash) =>
      ctx.write(async (tx) => {
        const value = await tx.get(tokenKey(hash));
        if (value === undefined) return undefined;
        const { expiresAt } = JSON.parse(value) as StoredToken;
        tx.del(tokenKey(hash));
        tx.del(tokenExpiryKey(expiresAt, hash));
        return { expiresAt };
      }),

    pruneJoinTokens: async (now) => {
      requireTime('now', now);
      return ctx.write(async (tx) => {
        // Tokens created earlier in the same write group are not in the index read yet; the next
        // prune removes them.
        const expired = await ctx.db.keys({ gte: TOKEN_EXPIRY_PREFIX, lt: tokenExpiryKey(now, '') }).all();
        let count = 0;
        for (const key of expired) {
          const hash = hashOfTokenExpiryKey(key);
          if ((await tx.get(tokenKey(hash))) === undefined) continue; // consumed in this group
          tx.del(tokenKey(hash));
          tx.del(key);
          count += 1;
        }
        return count;
      });
    },
  };
}
