// Counts datastore operations for the server's /metrics: emblem_server_datastore_operations_total
// {operation, kind, outcome}. "kind" is read, write or probe (the health check's ping), so an
// operator can see at a glance that agents are served from the in-memory mirror (reads stay flat
// while nothing changes) and how hard writes hit the store.
import { Counter, type Registry } from 'prom-client';
import type { Datastore } from './types.js';

export type DatastoreOperationKind = 'read' | 'write' | 'probe';

type CountedMethod = Exclude<keyof Datastore, 'onChange' | 'close'>;

/** Every Datastore method but onChange and close; a new method must be classified here to compile. */
export const DATASTORE_OPERATION_KINDS: Readonly<Record<CountedMethod, DatastoreOperationKind>> = {
  ping: 'probe',
  getMeta: 'read',
  setMeta: 'write',
  createEntry: 'write',
  updateEntry: 'write',
  deleteEntry: 'write',
  getEntry: 'read',
  listAllEntries: 'read',
  putAgent: 'write',
  getAgent: 'read',
  listAgents: 'read',
  deleteAgent: 'write',
  touchAgent: 'write',
  createJoinToken: 'write',
  consumeJoinToken: 'write',
  pruneJoinTokens: 'write',
  getBundle: 'read',
  setBundle: 'write',
  getFederatedBundle: 'read',
  listFederatedBundles: 'read',
  setFederatedBundle: 'write',
  deleteFederatedBundle: 'write',
  putAuthority: 'write',
  listAuthorities: 'read',
  deleteAuthority: 'write',
  recordSvids: 'write',
  listSvids: 'read',
  currentRevision: 'read',
  oldestRetainedRevision: 'read',
  listChanges: 'read',
};

type AnyMethod = (...args: unknown[]) => Promise<unknown>;

/** A Datastore that counts each call (after it settles) on `registry`, then behaves exactly like `inner`. */
export function instrumentDatastore(inner: Datastore, registry: Registry): Datastore {
  const operations = new Counter({
    name: 'emblem_server_datastore_operations_total',
    help: 'Datastore calls by operation, kind (read, write, probe) and outcome (ok, error).',
    labelNames: ['operation', 'kind', 'outcome'] as const,
    registers: [registry],
  });
  const methods = inner as unknown as Record<string, AnyMethod>;
  const wrapped: Record<string, unknown> = {
    onChange: inner.onChange.bind(inner),
    close: inner.close.bind(inner),
  };
  for (const [operation, kind] of Object.entries(DATASTORE_OPERATION_KINDS)) {
    const method = methods[operation]!.bind(inner);
    // Start at zero so a scrape shows every operation, not only those already used.
    operations.inc({ operation, kind, outcome: 'ok' }, 0);
    wrapped[operation] = async (...args: unknown[]) => {
      try {
        const result = await method(...args);
        operations.inc({ operation, kind, outcome: 'ok' });
        return result;
      } catch (err) {
        operations.inc({ operation, kind, outcome: 'error' });
        throw err;
      }
    };
  }
  return wrapped as unknown as Datastore;
}
