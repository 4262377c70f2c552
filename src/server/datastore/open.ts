// Opens the datastore named by the server configuration.
import type { Datastore } from './types.js';
import { openLevelDatastore } from './level/level-store.js';

/** The local datastore: one LevelDB database in <dataDir>/datastore (single server). */
export interface LevelDatastoreConfig {
  kind: 'level';
  dataDir: string;
  /** How many of the newest change events to keep (default 100,000). */
  changeLogRetention?: number;
}

// A shared PostgreSQL datastore (HA) joins this union as `PostgresDatastoreConfig` with its own
// case in openDatastore; it must pass test/server/datastore/suite.ts.
export type DatastoreConfig = LevelDatastoreConfig;

export async function openDatastore(config: DatastoreConfig): Promise<Datastore> {
  switch (config.kind) {
    case 'level':
      return openLevelDatastore({ dataDir: config.dataDir, changeLogRetention: config.changeLogRetention });
  }
}
