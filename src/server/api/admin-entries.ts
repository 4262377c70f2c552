// Admin API handlers for registration entries. Writes go to the datastore; reads come from the
// in-memory mirror after it has caught up with this process's writes (read-your-writes).
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { EmblemError, errorMessage, notFound } from '../../common/errors.js';
import { grpcCodeOf } from '../../common/grpc/status.js';
import { loggableId } from '../../common/spiffe-id.js';
import type { Datastore, EntryRecord } from '../datastore/types.js';
import { entryToProto, type EntryProto } from '../entries/convert.js';
import { listEntries, type EntryFilter } from '../entries/filter.js';
import { validateEntryUpdate, validateNewEntry, type EntryValidationContext } from '../entries/validate.js';
import type { StateMirror } from '../sync/state-mirror.js';
import type { AdminGuard } from './admin-guard.js';

export interface AdminEntriesDeps {
  trustDomain: string;
  datastore: Datastore;
  mirror: StateMirror;
  guard: AdminGuard;
  audit(action: string, fields: Record<string, unknown>): void;
}

export const MAX_BATCH_ENTRIES = 1000;

interface ListRequest {
  spiffe_id: string;
  parent_id: string;
  selectors: { type: string; value: string }[];
  selector_match: EntryFilter['selectorMatch'];
  page_size: number;
  page_token: string;
}

function toFilter(req: ListRequest): EntryFilter {
  return {
    spiffeId: req.spiffe_id || undefined,
    parentId: req.parent_id || undefined,
    selectors: req.selectors.length > 0 ? req.selectors : undefined,
    selectorMatch: req.selector_match,
  };
}

export function entryHandlers(deps: AdminEntriesDeps): UntypedServiceImplementation {
  const { guard } = deps;
  const context = (): EntryValidationContext => ({
    trustDomain: deps.trustDomain,
    knownFederatedTrustDomains: new Set(deps.mirror.federatedBundles().keys()),
    now: Math.floor(Date.now() / 1000),
  });
  const caughtUp = async () => deps.mirror.waitForRevision(await deps.datastore.currentRevision());

  const create = async (input: Partial<EntryProto>): Promise<EntryRecord> => {
    const entry = validateNewEntry(input, context());
    const stored = await deps.datastore.createEntry({ ...entry, createdAt: entry.createdAt || Math.floor(Date.now() / 1000) });
    deps.audit('entry.create', { entryId: stored.id, spiffeId: stored.spiffeId, parentId: loggableId(stored.parentId) });
    return stored;
  };

  return {
    CreateEntry: guard.unary(async (req: Partial<EntryProto>) => {
      const stored = await create(req);
      await caughtUp();
      return entryToProto(stored);
    }),

    BatchCreateEntry: guard.unary(async (req: { entries: Partial<EntryProto>[] }) => {
      if (req.entries.length > MAX_BATCH_ENTRIES) throw new EmblemError('invalid_argument', `at most ${MAX_BATCH_ENTRIES} entries per batch`);
      const results = [];
      for (const input of req.entries) {
        try {
          const stored = await create(input);
          results.push({ status: { code: 0, message: '' }, entry: entryToProto(stored) });
        } catch (err) {
          const code = err instanceof EmblemError ? grpcCodeOf(err.code) : grpcCodeOf('internal');
          results.push({ status: { code, message: err instanceof EmblemError ? err.message : 'internal error' }, entry: null });
          if (!(err instanceof EmblemError)) deps.audit('entry.create.failed', { reason: errorMessage(err) });
        }
      }
      await caughtUp();
      return { results };
    }),

    UpdateEntry: guard.unary(async (req: Partial<EntryProto>) => {
      const entry = validateEntryUpdate(req, context());
      const existing = deps.mirror.getEntry(entry.id) ?? (await deps.datastore.getEntry(entry.id));
      if (!existing) throw notFound(`entry ${entry.id} not found`);
      const stored = await deps.datastore.updateEntry({ ...entry, createdAt: existing.createdAt });
      deps.audit('entry.update', { entryId: stored.id, spiffeId: stored.spiffeId });
      await caughtUp();
      return entryToProto(stored);
    }),

    DeleteEntry: guard.unary(async (req: { id: string }) => {
      const deleted = await deps.datastore.deleteEntry(req.id);
      deps.audit('entry.delete', { entryId: deleted.id, spiffeId: deleted.spiffeId });
      await caughtUp();
      return {};
    }),

    GetEntry: guard.unary(async (req: { id: string }) => {
      await caughtUp();
      const entry = deps.mirror.getEntry(req.id);
      if (!entry) throw notFound(`entry ${req.id} not found`);
      return entryToProto(entry);
    }),

    ListEntries: guard.unary(async (req: ListRequest) => {
      await caughtUp();
      const page = listEntries(deps.mirror, toFilter(req), req.page_size, req.page_token);
      return { entries: page.entries.map(entryToProto), next_page_token: page.nextPageToken };
    }),

    CountEntries: guard.unary(async (req: ListRequest) => {
      await caughtUp();
      const filter = toFilter(req);
      if (!filter.spiffeId && !filter.parentId && !filter.selectors) return { count: deps.mirror.entryCount() };
      let count = 0;
      let token = '';
      do {
        const page = listEntries(deps.mirror, filter, 10_000, token);
        count += page.entries.length;
        token = page.nextPageToken;
      } while (token);
      return { count };
    }),
  };
}
