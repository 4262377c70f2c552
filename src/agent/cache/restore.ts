// Start-up: fills the cache from the store, so a restarted agent serves its cached identities at
// once (even with the server down) until they expire. Expired SVIDs are loaded but never handed
// out (SvidCache.x509Identity checks), and the minter replaces them.
import type { AgentSnapshot } from '../storage/agent-store.js';
import type { SvidCache } from './svid-cache.js';

export function restoreCache(cache: SvidCache, snapshot: AgentSnapshot): void {
  cache.applySync({
    full: true,
    upserted: snapshot.entries,
    deletedIds: [],
    ...(snapshot.bundle ? { bundle: snapshot.bundle } : {}),
    federatedBundles: snapshot.federatedBundles,
  });
  cache.putIdentities(
    snapshot.identities.map((i) => ({
      entryId: i.entryId,
      chain: i.chain,
      privateKeyPkcs8: i.privateKeyPkcs8,
      notAfter: i.notAfter,
      authorityId: i.authorityId,
    })),
  );
}
