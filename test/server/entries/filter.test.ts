import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import type { Selector } from '../../../src/common/selectors.js';
import { openDatastore } from '../../../src/server/datastore/open.js';
import type { Datastore, EntryRecord, NewEntry } from '../../../src/server/datastore/types.js';
import { countEntries, listEntries, matchesFilter } from '../../../src/server/entries/filter.js';
import { createStateMirror, type StateMirror } from '../../../src/server/sync/state-mirror.js';
import { joinTokenAgentId, newEntryRecord, sel, TD } from '../../helpers/records.js';

const P1 = joinTokenAgentId('p1');
const P2 = joinTokenAgentId('p2');

const entry = (id: string, selectors: Selector[], fields: Partial<NewEntry> = {}): NewEntry =>
  newEntryRecord(id, { parentId: P1, selectors, ...fields });

describe('entry filters', () => {
  const record = (selectors: Selector[]): EntryRecord => ({ ...entry('x', selectors), revision: 1 });
  const ab = record(sel('k:a', 'k:b'));

  it('SUPERSET: entry selectors contain all given (the default)', () => {
    assert.equal(matchesFilter(ab, { selectors: sel('k:a') }), true);
    assert.equal(matchesFilter(ab, { selectors: sel('k:a', 'k:b'), selectorMatch: 'SELECTOR_MATCH_SUPERSET' }), true);
    assert.equal(matchesFilter(ab, { selectors: sel('k:a', 'k:c') }), false);
  });

  it('EXACT: the same set', () => {
    assert.equal(matchesFilter(ab, { selectors: sel('k:b', 'k:a'), selectorMatch: 'SELECTOR_MATCH_EXACT' }), true);
    assert.equal(matchesFilter(ab, { selectors: sel('k:a'), selectorMatch: 'SELECTOR_MATCH_EXACT' }), false);
    assert.equal(matchesFilter(ab, { selectors: sel('k:a', 'k:b', 'k:c'), selectorMatch: 'SELECTOR_MATCH_EXACT' }), false);
  });

  it('SUBSET: entry selectors all among the given', () => {
    assert.equal(matchesFilter(ab, { selectors: sel('k:a', 'k:b', 'k:c'), selectorMatch: 'SELECTOR_MATCH_SUBSET' }), true);
    assert.equal(matchesFilter(ab, { selectors: sel('k:a'), selectorMatch: 'SELECTOR_MATCH_SUBSET' }), false);
  });

  it('ANY: at least one in common', () => {
    assert.equal(matchesFilter(ab, { selectors: sel('k:b', 'k:z'), selectorMatch: 'SELECTOR_MATCH_ANY' }), true);
    assert.equal(matchesFilter(ab, { selectors: sel('k:z'), selectorMatch: 'SELECTOR_MATCH_ANY' }), false);
  });

  it('no selectors means no selector filter; spiffe_id and parent_id match exactly', () => {
    assert.equal(matchesFilter(ab, { selectors: [], selectorMatch: 'SELECTOR_MATCH_EXACT' }), true);
    assert.equal(matchesFilter(ab, { spiffeId: ab.spiffeId, parentId: P1 }), true);
    assert.equal(matchesFilter(ab, { spiffeId: `${ab.spiffeId}x` }), false);
    assert.equal(matchesFilter(ab, { parentId: P2 }), false);
    assert.throws(() => matchesFilter(ab, { selectorMatch: 'NOPE' as never }), /selector_match/);
  });

  describe('listEntries over the mirror', () => {
    let dir: string;
    let ds: Datastore;
    let mirror: StateMirror;

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-filter-'));
      ds = await openDatastore({ kind: 'level', dataDir: dir });
      for (let i = 0; i < 25; i++) {
        const selectors = i % 2 === 0 ? sel('k:even', `n:${i}`) : sel('k:odd', `n:${i}`);
        await ds.createEntry(entry(`e${String(i).padStart(2, '0')}`, selectors, { parentId: i < 10 ? P2 : P1 }));
      }
      mirror = createStateMirror(ds, { logger: silentLogger(), trustDomain: TD });
      await mirror.start();
    });

    after(async () => {
      await mirror.stop();
      await ds.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('pages in ascending id order with an opaque token', () => {
      const seen: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = listEntries(mirror, {}, 10, token);
        seen.push(...page.entries.map((e) => e.id));
        token = page.nextPageToken;
        pages++;
      } while (token !== '');
      assert.equal(pages, 3);
      assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `e${String(i).padStart(2, '0')}`));
      assert.equal(listEntries(mirror, {}, 0).entries.length, 25, '0 = default page size');
    });

    it('filters with the indexes and the selector modes', () => {
      const page = listEntries(mirror, { parentId: P2, selectors: sel('k:even') }, 3);
      assert.deepEqual(page.entries.map((e) => e.id), ['e00', 'e02', 'e04']);
      const rest = listEntries(mirror, { parentId: P2, selectors: sel('k:even') }, 3, page.nextPageToken);
      assert.deepEqual(rest.entries.map((e) => e.id), ['e06', 'e08']);
      assert.equal(rest.nextPageToken, '');
      assert.deepEqual(listEntries(mirror, { spiffeId: `spiffe://${TD}/w/e13` }).entries.map((e) => e.id), ['e13']);
      assert.deepEqual(
        listEntries(mirror, { selectors: sel('n:3', 'n:4'), selectorMatch: 'SELECTOR_MATCH_ANY' }).entries.map((e) => e.id),
        ['e03', 'e04'],
      );
      assert.equal(countEntries(mirror, {}), 25);
      assert.equal(countEntries(mirror, { selectors: sel('k:odd') }), 12);
      assert.equal(countEntries(mirror, { parentId: P1, selectors: sel('k:odd') }), 7);
    });

    it('rejects a malformed page token or size', () => {
      for (const [size, token] of [[10, 'not base64!'], [-1, '']] as const) {
        assert.throws(
          () => listEntries(mirror, {}, size, token),
          (err: unknown) => err instanceof EmblemError && err.code === 'invalid_argument',
        );
      }
    });
  });
});
