// The own trust bundle and federated bundles.
import { notFound } from '../../../common/errors.js';
import type { Datastore } from '../types.js';
import { decodeBundle, encodeBundle } from './codec.js';
import type { StoreContext } from './context.js';
import { BUNDLE_KEY, FEDERATED_BUNDLE_PREFIX, federatedBundleKey, prefixRange, requireKeyPart } from './keys.js';

type BundleMethods = Pick<
  Datastore,
  | 'getBundle'
  | 'setBundle'
  | 'getFederatedBundle'
  | 'listFederatedBundles'
  | 'setFederatedBundle'
  | 'deleteFederatedBundle'
>;

export function bundleMethods(ctx: StoreContext): BundleMethods {
  return {
    getBundle: async () => {
      const stored = await ctx.db.get(BUNDLE_KEY);
      return stored === undefined ? undefined : decodeBundle(stored);
    },

    setBundle: async (bundle) => {
      const value = encodeBundle(bundle);
      return ctx.write(async (tx) => {
        tx.put(BUNDLE_KEY, value);
        tx.change('bundle', '', false);
      });
    },

    getFederatedBundle: async (trustDomain) => {
      const stored = await ctx.db.get(federatedBundleKey(trustDomain));
      return stored === undefined ? undefined : decodeBundle(stored);
    },

    listFederatedBundles: async () => {
      const values = await ctx.db.values(prefixRange(FEDERATED_BUNDLE_PREFIX)).all();
      return values.map(decodeBundle);
    },

    setFederatedBundle: async (bundle) => {
      const trustDomain = requireKeyPart('trust domain', bundle.trustDomain);
      const value = encodeBundle(bundle);
      return ctx.write(async (tx) => {
        tx.put(federatedBundleKey(trustDomain), value);
        tx.change('federated_bundle', trustDomain, false);
      });
    },

    deleteFederatedBundle: async (trustDomain) =>
      ctx.write(async (tx) => {
        const key = federatedBundleKey(trustDomain);
        if ((await tx.get(key)) === undefined) throw notFound(`federated bundle for ${trustDomain} not found`);
        tx.del(key);
        tx.change('federated_bundle', trustDomain, true);
      }),
  };
}
