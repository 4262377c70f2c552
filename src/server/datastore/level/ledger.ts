// The issuance ledger: one row per issued SVID plus three indexes (SPIFFE ID, agent, expiry).
//
// listSvids picks one index: spiffeId if given, else agentId, else the expiry index if an expiry
// bound is given, else the rows themselves; any other filter of the query is applied to what that
// index yields. Order (also the pagination order), oldest first:
// - by spiffeId, by agentId, or no filter: issuedAt ascending, then serial;
// - expiry bounds only: notAfter ascending, then issuedAt, then serial.
import type { Datastore, SvidQuery, SvidRecord } from '../types.js';
import { decodeSvid, encodeSvid } from './codec.js';
import type { StoreContext } from './context.js';
import {
  SVID_EXPIRY_PREFIX,
  SVID_PREFIX,
  pad,
  prefixRange,
  requireKeyPart,
  requireTime,
  svidByAgentPrefix,
  svidBySpiffeIdPrefix,
  svidExpiryBound,
  svidExpiryKey,
  svidKey,
  type KeyRange,
} from './keys.js';
import { decodePageToken, encodePageToken, pageRange, pageSize } from './paging.js';

type LedgerMethods = Pick<Datastore, 'recordSvids' | 'listSvids'>;

interface Put {
  key: string;
  value: string;
}

function ledgerPuts(r: SvidRecord): Put[] {
  requireKeyPart('SVID serial', r.serial);
  requireKeyPart('SVID SPIFFE ID', r.spiffeId);
  requireTime('SVID notAfter', r.notAfter);
  const primary = svidKey(requireTime('SVID issuedAt', r.issuedAt), r.serial);
  const suffix = `${pad(r.issuedAt)}/${r.serial}`;
  const puts: Put[] = [
    { key: primary, value: encodeSvid(r) },
    { key: svidBySpiffeIdPrefix(r.spiffeId) + suffix, value: primary },
    { key: svidExpiryKey(r.notAfter, r.issuedAt, r.serial), value: primary },
  ];
  if (r.agentId !== '') puts.push({ key: svidByAgentPrefix(r.agentId) + suffix, value: primary });
  return puts;
}

interface IndexChoice {
  range: KeyRange;
  /** true when values are primary keys, false when they are the rows. */
  secondary: boolean;
}

function chooseIndex(q: SvidQuery): IndexChoice {
  if (q.spiffeId !== undefined) return { range: prefixRange(svidBySpiffeIdPrefix(q.spiffeId)), secondary: true };
  if (q.agentId !== undefined) return { range: prefixRange(svidByAgentPrefix(q.agentId)), secondary: true };
  if (q.notExpiredAt !== undefined || q.expiresBefore !== undefined) {
    const all = prefixRange(SVID_EXPIRY_PREFIX);
    return {
      range: {
        gte: q.notExpiredAt === undefined ? all.gte : svidExpiryBound(q.notExpiredAt + 1),
        lt: q.expiresBefore === undefined ? all.lt : svidExpiryBound(q.expiresBefore + 1),
      },
      secondary: true,
    };
  }
  return { range: prefixRange(SVID_PREFIX), secondary: false };
}

const matches = (r: SvidRecord, q: SvidQuery): boolean =>
  (q.spiffeId === undefined || r.spiffeId === q.spiffeId) &&
  (q.agentId === undefined || r.agentId === q.agentId) &&
  (q.expiresBefore === undefined || r.notAfter <= q.expiresBefore) &&
  (q.notExpiredAt === undefined || r.notAfter > q.notExpiredAt);

export function ledgerMethods(ctx: StoreContext): LedgerMethods {
  return {
    recordSvids: async (records) => {
      const puts = records.flatMap(ledgerPuts);
      if (puts.length === 0) return;
      return ctx.write(async (tx) => {
        for (const { key, value } of puts) tx.put(key, value);
      });
    },

    listSvids: async (query) => {
      if (query.expiresBefore !== undefined) requireTime('expiresBefore', query.expiresBefore);
      if (query.notExpiredAt !== undefined) requireTime('notExpiredAt', query.notExpiredAt);
      const size = pageSize(query.pageSize);
      const { range, secondary } = chooseIndex(query);
      const after = decodePageToken(query.pageToken, range);
      if (range.gte >= range.lt) return { items: [], nextPageToken: '' };

      // One match beyond the page tells whether there is a next page.
      const found: Array<{ key: string; record: SvidRecord }> = [];
      const iterator = ctx.db.iterator(pageRange(range, after));
      try {
        const chunkSize = Math.min(Math.max(size + 1, 64), 1000);
        while (found.length <= size) {
          const chunk = await iterator.nextv(chunkSize);
          if (chunk.length === 0) break;
          const rows = secondary ? await ctx.db.getMany(chunk.map(([, primary]) => primary)) : chunk.map(([, v]) => v);
          for (let i = 0; i < chunk.length && found.length <= size; i++) {
            const row = rows[i];
            if (row === undefined) continue;
            const record = decodeSvid(row);
            if (matches(record, query)) found.push({ key: chunk[i][0], record });
          }
        }
      } finally {
        await iterator.close();
      }
      const items = found.slice(0, size).map((f) => f.record);
      const nextPageToken = found.length > size ? encodePageToken(found[size - 1].key) : '';
      return { items, nextPageToken };
    },
  };
}
