// A terminated identity source (banned or evicted agent) ends every open FetchX509SVID stream at
// once, without identifying each caller again first (with 1,000 open streams that took ~0.4 s).
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import type { X509SvidResponse } from '../../../src/agent/workloadapi/responses.js';
import { FakeSource, TD, collect, identifyByHeader, makeEntry, makePki, md, open, startHarness, type Harness } from './fixtures.js';

describe('Workload API with a terminated source', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('ends open streams with the status of the empty view, without re-identifying the callers', async () => {
    const source = new FakeSource(await makePki(TD, 1));
    const identify = identifyByHeader(new Map([['web', ['unix:uid:1000']]]));
    source.add(makeEntry('/web', ['unix:uid:1000']));
    h = await startHarness({ source, identify });
    const streams = Array.from({ length: 3 }, () => collect(open<X509SvidResponse>(h!.client, 'FetchX509SVID', md('web')), (m) => m.length === 2));
    while (identify.calls < 3) await new Promise((r) => setTimeout(r, 5));
    const identifiedBefore = identify.calls;

    // What SvidCache.terminate() does: no entries, not ready, listeners told.
    source.entries = [];
    source.identities.clear();
    source.isReady = false;
    source.notify();
    for (const { messages, error } of await Promise.all(streams)) {
      assert.equal(messages.length, 1);
      assert.equal(error?.code, status.PERMISSION_DENIED);
    }
    assert.equal(identify.calls, identifiedBefore, 'no caller was identified again');
  });
});
