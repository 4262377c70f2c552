import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { writeBatch } from '../../src/common/level-batch.js';

describe('writeBatch', () => {
  let dir: string;
  let db: Level<string, string>;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-level-batch-'));
    db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
  });
  afterEach(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes puts and deletes as one batch, in order', async () => {
    await db.put('gone', 'x');
    await writeBatch(db, [{ type: 'put', key: 'a', value: '1' }, { type: 'del', key: 'gone' }, { type: 'put', key: 'a', value: '2' }], { sync: true });
    assert.equal(await db.get('a'), '2', 'a later put of the same key wins');
    assert.equal(await db.get('gone'), undefined);
    await writeBatch(db, [], { sync: true });
  });

  it('writes nothing when one operation is refused, and the store stays usable', async () => {
    const bad = { type: 'put', key: null, value: 'x' } as unknown as { type: 'put'; key: string; value: string };
    await assert.rejects(writeBatch(db, [{ type: 'put', key: 'first', value: '1' }, bad], { sync: true }));
    assert.equal(await db.get('first'), undefined);
    await writeBatch(db, [{ type: 'put', key: 'after', value: 'ok' }], { sync: true });
    assert.equal(await db.get('after'), 'ok');
  });
});
