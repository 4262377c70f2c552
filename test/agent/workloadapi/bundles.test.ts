import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import type { JwtBundlesResponse, X509BundlesResponse } from '../../../src/agent/workloadapi/responses.js';
import { parseJwtBundleBytes } from '../../../src/common/workload-bundle.js';
import { createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import {
  FakeSource,
  TD,
  collect,
  eventually,
  identifyByHeader,
  makeEntry,
  makePki,
  md,
  open,
  sleep,
  startHarness,
  type Harness,
  type Pki,
} from './fixtures.js';

describe('Workload API FetchX509Bundles and FetchJWTBundles', () => {
  let pki: Pki;
  let other: Pki;
  let third: Pki;
  let source: FakeSource;
  let identify: ReturnType<typeof identifyByHeader>;
  let h: Harness;

  before(async () => {
    [pki, other, third] = await Promise.all([makePki(TD), makePki('other.org'), makePki('third.org')]);
  });

  beforeEach(async () => {
    source = new FakeSource(pki);
    source.federated.set('other.org', other.bundle);
    source.federated.set('third.org', third.bundle);
    // A minted SVID is not needed for bundles: the entry alone entitles the caller.
    source.add(makeEntry('/web', ['unix:uid:1000'], { federatesWith: ['other.org', 'missing.org'] }), false);
    identify = identifyByHeader(
      new Map([
        ['web', ['unix:uid:1000']],
        ['nobody', ['unix:uid:1']],
      ]),
    );
    h = await startHarness({ source, identify });
  });

  afterEach(async () => {
    await h.close();
  });

  it('X.509: own trust domain plus the trust domains the caller federates with, as concatenated DER', async () => {
    const { messages, error } = await collect(open<X509BundlesResponse>(h.client, 'FetchX509Bundles', md('web')), (m) => m.length === 1);
    assert.equal(error, undefined);
    const [msg] = messages;
    assert.deepEqual(Object.keys(msg.bundles).sort(), ['spiffe://example.org', 'spiffe://other.org']);
    assert.ok(msg.bundles['spiffe://example.org'].equals(pki.caDer));
    assert.ok(msg.bundles['spiffe://other.org'].equals(other.caDer));
    assert.deepEqual(msg.crl, []);
  });

  it('JWT: JWKS of the JWT keys only (kid set, no use), own plus federated', async () => {
    const { messages } = await collect(open<JwtBundlesResponse>(h.client, 'FetchJWTBundles', md('web')), (m) => m.length === 1);
    const [msg] = messages;
    assert.deepEqual(Object.keys(msg.bundles).sort(), ['spiffe://example.org', 'spiffe://other.org']);
    const own = JSON.parse(msg.bundles['spiffe://example.org'].toString('utf8')) as { keys: Array<Record<string, unknown>> };
    assert.equal(own.keys.length, 1);
    assert.equal(own.keys[0].kid, pki.kid);
    assert.equal(own.keys[0].use, undefined);
    assert.equal(own.keys[0].x5c, undefined);
    assert.deepEqual(
      parseJwtBundleBytes(msg.bundles['spiffe://other.org']).map((a) => a.kid),
      [other.kid],
    );
  });

  it('suppresses identical consecutive messages and sends each real change', async () => {
    const x509: X509BundlesResponse[] = [];
    const jwt: JwtBundlesResponse[] = [];
    const xCall = open<X509BundlesResponse>(h.client, 'FetchX509Bundles', md('web'));
    const jCall = open<JwtBundlesResponse>(h.client, 'FetchJWTBundles', md('web'));
    xCall.on('data', (m: X509BundlesResponse) => x509.push(m));
    jCall.on('data', (m: JwtBundlesResponse) => jwt.push(m));
    xCall.on('error', () => {});
    jCall.on('error', () => {});
    await eventually(() => x509.length === 1 && jwt.length === 1, 3000, 'first messages');

    // Same contents in new objects, and a change to a trust domain the caller does not federate with.
    source.ownBundle = { ...pki.bundle, x509Authorities: [...pki.bundle.x509Authorities] };
    source.federated.set('third.org', { ...third.bundle, sequence: 9, x509Authorities: [createSelfSignedCa({ trustDomain: 'third.org', keyPair: generateKeyPair(), ttlSeconds: 60 })] });
    source.notify();
    await sleep(50);
    assert.equal(x509.length, 1);
    assert.equal(jwt.length, 1);

    // A new X.509 authority in a federated bundle: the X.509 stream sends, the JWT stream does not.
    const newCa = createSelfSignedCa({ trustDomain: 'other.org', keyPair: generateKeyPair(), ttlSeconds: 60 });
    source.federated.set('other.org', { ...other.bundle, sequence: 2, x509Authorities: [other.caDer, newCa] });
    source.notify();
    await eventually(() => x509.length === 2, 3000, 'x509 bundle change');
    assert.ok(x509[1].bundles['spiffe://other.org'].equals(Buffer.concat([other.caDer, newCa])));
    await sleep(50);
    assert.equal(jwt.length, 1);

    // Federation removed: both maps lose the trust domain (an absent key means "unload it").
    source.entries[0] = { ...source.entries[0], federatesWith: [] };
    source.notify();
    await eventually(() => x509.length === 3 && jwt.length === 2, 3000, 'federation removed');
    assert.deepEqual(Object.keys(x509[2].bundles), ['spiffe://example.org']);
    assert.deepEqual(Object.keys(jwt[1].bundles), ['spiffe://example.org']);
    xCall.cancel();
    jCall.cancel();
    await eventually(() => source.liveSubscriptions === 0, 3000, 'unsubscribed');
  });

  it('answers PermissionDenied with no message without identity, and ends streams that lose it', async () => {
    for (const method of ['FetchX509Bundles', 'FetchJWTBundles']) {
      const r = await collect(open(h.client, method, md('nobody')));
      assert.equal(r.error?.code, status.PERMISSION_DENIED, method);
      assert.equal(r.messages.length, 0);
    }
    const x = collect(open(h.client, 'FetchX509Bundles', md('web')));
    const j = collect(open(h.client, 'FetchJWTBundles', md('web')));
    await eventually(() => identify.calls >= 4 && source.liveSubscriptions === 2, 3000, 'streams open');
    await sleep(20);
    source.entries = [];
    source.notify();
    for (const r of await Promise.all([x, j])) {
      assert.equal(r.messages.length, 1);
      assert.equal(r.error?.code, status.PERMISSION_DENIED);
    }
    assert.equal(source.liveSubscriptions, 0);
  });
});
