// The CA journal: one record per X.509 or JWT authority.
import { notFound } from '../../../common/errors.js';
import type { Datastore } from '../types.js';
import { decodeAuthority, encodeAuthority } from './codec.js';
import type { StoreContext } from './context.js';
import { AUTHORITY_PREFIX, authorityKey, prefixRange, requireKeyPart } from './keys.js';

type AuthorityMethods = Pick<Datastore, 'putAuthority' | 'listAuthorities' | 'deleteAuthority'>;

export function authorityMethods(ctx: StoreContext): AuthorityMethods {
  return {
    putAuthority: async (authority) => {
      const id = requireKeyPart('authority id', authority.id);
      const value = encodeAuthority(authority);
      return ctx.write(async (tx) => {
        tx.put(authorityKey(id), value);
        tx.change('authority', id, false);
      });
    },

    listAuthorities: async () => {
      const values = await ctx.db.values(prefixRange(AUTHORITY_PREFIX)).all();
      return values.map(decodeAuthority);
    },

    deleteAuthority: async (id) =>
      ctx.write(async (tx) => {
        if ((await tx.get(authorityKey(id))) === undefined) throw notFound(`authority ${id} not found`);
        tx.del(authorityKey(id));
        tx.change('authority', id, true);
      }),
  };
}
