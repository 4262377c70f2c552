// Child process of crash.test.ts: creates entries as fast as it can, from several concurrent loops,
// and prints "ack <n>" for each entry whose createEntry resolved. The parent kills it with SIGKILL.
import { openDatastore } from '../../../src/server/datastore/open.js';
import { newEntry } from './fixtures.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: crash-child.ts <dataDir>');

const store = await openDatastore({ kind: 'level', dataDir });
process.stdout.write('ready\n');

let next = 0;
async function loop(): Promise<never> {
  for (;;) {
    const n = next++;
    await store.createEntry(newEntry(n));
    process.stdout.write(`ack ${n}\n`);
  }
}

await Promise.all(Array.from({ length: 8 }, loop));
