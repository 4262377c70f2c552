import assert from 'node:assert/strict';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { FakeSource, TD, collect, identifyByHeader, makeEntry, makePki, md, open, startHarness, unary, type Harness } from './fixtures.js';

const STREAMS = ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles', 'FetchWITSVID', 'FetchWITBundles'];
const UNARY: Array<[string, unknown]> = [
  ['FetchJWTSVID', { audience: ['aud'] }],
  ['ValidateJWTSVID', { audience: 'aud', svid: 'a.b.c' }],
];

function withHeader(values: string[] | null): Metadata {
  const m = md('web', null);
  for (const v of values ?? []) m.add('workload.spiffe.io', v);
  return m;
}

describe('Workload API request checks', () => {
  let source: FakeSource;
  let identify: ReturnType<typeof identifyByHeader>;
  let h: Harness;

  beforeEach(async () => {
    source = new FakeSource(await makePki(TD));
    source.add(makeEntry('/web', ['unix:uid:1000']));
    identify = identifyByHeader(new Map([['web', ['unix:uid:1000']]]));
    h = await startHarness({ source, identify });
  });

  afterEach(async () => {
    await h.close();
  });

  async function codeOf(method: string, meta: Metadata): Promise<{ code: status | undefined; details?: string; messages: number }> {
    const u = UNARY.find(([m]) => m === method);
    if (u) {
      try {
        await unary(h.client, method, u[1], meta);
        return { code: status.OK, messages: 1 };
      } catch (err) {
        const e = err as ServiceError;
        return { code: e.code, details: e.details, messages: 0 };
      }
    }
    const r = await collect(open(h.client, method, meta), (m) => m.length === 1);
    return { code: r.error?.code, details: r.error?.details, messages: r.messages.length };
  }

  const ALL = [...STREAMS, ...UNARY.map(([m]) => m)];
  const badHeaders: Array<[string, string[] | null]> = [
    ['missing', null],
    ['false', ['false']],
    ['"True" (case-sensitive)', ['True']],
    ['duplicated', ['true', 'true']],
  ];
  for (const [label, values] of badHeaders) {
    it(`answers InvalidArgument, before identifying the caller, when the security header is ${label}`, async () => {
      for (const method of ALL) {
        const r = await codeOf(method, withHeader(values));
        assert.equal(r.code, status.INVALID_ARGUMENT, method);
        assert.equal(r.details, 'security header missing from request', method);
        assert.equal(r.messages, 0, method);
      }
      assert.equal(identify.calls, 0);
      assert.equal(source.liveSubscriptions, 0);
    });
  }

  it('answers Unavailable while the source is not ready', async () => {
    source.isReady = false;
    for (const method of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles', 'FetchJWTSVID', 'ValidateJWTSVID']) {
      const r = await codeOf(method, withHeader(['true']));
      assert.equal(r.code, status.UNAVAILABLE, method);
    }
    assert.equal(identify.calls, 0);
  });

  it('answers Unimplemented for the WIT profile', async () => {
    for (const method of ['FetchWITSVID', 'FetchWITBundles']) {
      const r = await codeOf(method, withHeader(['true']));
      assert.equal(r.code, status.UNIMPLEMENTED, method);
      assert.equal(r.messages, 0);
    }
  });

  it('answers Unimplemented for an unknown method', async () => {
    const err = await new Promise<ServiceError | null>((resolve) =>
      h.client.makeUnaryRequest(
        '/SpiffeWorkloadAPI/FetchEverything',
        () => Buffer.alloc(0),
        (b: Buffer) => b,
        {},
        withHeader(['true']),
        (e) => resolve(e),
      ),
    );
    assert.equal(err?.code, status.UNIMPLEMENTED);
  });
});
