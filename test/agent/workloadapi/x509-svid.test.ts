import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { status, type ClientReadableStream, type ServerWritableStream } from '@grpc/grpc-js';
import { EmblemError } from '../../../src/common/errors.js';
import type { X509SvidResponse } from '../../../src/agent/workloadapi/responses.js';
import type { IdentifyCaller, WorkloadApiMethod } from '../../../src/agent/workloadapi/service.js';
import {
  FakeSource,
  TD,
  collect,
  eventually,
  identifyByHeader,
  makeEntry,
  makePki,
  md,
  mintIdentity,
  open,
  sleep,
  startHarness,
  type Harness,
  type Pki,
} from './fixtures.js';

const WEB = ['unix:uid:1000', 'unix:gid:0'];

describe('Workload API FetchX509SVID', () => {
  let pki: Pki;
  let other: Pki;
  let source: FakeSource;
  let identify: ReturnType<typeof identifyByHeader>;
  let h: Harness;
  const callers = new Map<string, string[]>([
    ['web', WEB],
    ['nobody', ['unix:uid:9999']],
  ]);

  before(async () => {
    pki = await makePki(TD, 1);
    other = await makePki('other.org');
  });

  beforeEach(async () => {
    source = new FakeSource(pki);
    identify = identifyByHeader(callers);
    h = await startHarness({ source, identify });
  });

  afterEach(async () => {
    await h.close();
  });

  const fetch = (caller = 'web'): ClientReadableStream<X509SvidResponse> => open(h.client, 'FetchX509SVID', md(caller));

  it('sends the full state at once: default first, unique hints, DER chain, PKCS#8 key, federated bundles', async () => {
    source.federated.set('other.org', other.bundle);
    const web = source.add(makeEntry('/web', ['unix:uid:1000'], { hint: 'web', federatesWith: ['other.org', 'absent.org'] }));
    source.add(makeEntry('/db', ['unix:uid:1000'], { hint: 'web' }));
    const admin = source.add(makeEntry('/admin', WEB));
    source.add(makeEntry('/elsewhere', ['unix:uid:2000']));

    const { messages, error } = await collect(fetch(), (m) => m.length === 1);
    assert.equal(error, undefined);
    const [msg] = messages;
    assert.deepEqual(
      msg.svids.map((s) => [s.spiffe_id, s.hint]),
      [
        [web.spiffeId, 'web'],
        [admin.spiffeId, ''],
      ],
    );
    for (const svid of msg.svids) {
      const cert = new X509Certificate(svid.x509_svid);
      assert.equal(cert.subjectAltName, `URI:${svid.spiffe_id}`);
      const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
      assert.ok(cert.checkPrivateKey(key));
      assert.ok(cert.verify(new X509Certificate(pki.caDer).publicKey));
      assert.ok(svid.x509_svid.equals(source.identities.get(svid.spiffe_id === web.spiffeId ? web.id : admin.id)!.chain[0]));
      assert.ok(svid.bundle.equals(Buffer.concat(pki.bundle.x509Authorities)));
      assert.equal(pki.bundle.x509Authorities.length, 2);
    }
    assert.deepEqual(Object.keys(msg.federated_bundles), ['spiffe://other.org']);
    assert.ok(msg.federated_bundles['spiffe://other.org'].equals(other.caDer));
    assert.deepEqual(msg.crl, []);
    await eventually(() => source.liveSubscriptions === 0, 3000, 'unsubscribe after cancel');
  });

  it('waits for the first minted SVID instead of sending an empty message', async () => {
    const entry = source.add(makeEntry('/late', WEB), false);
    const messages: X509SvidResponse[] = [];
    const call = fetch();
    call.on('data', (m: X509SvidResponse) => messages.push(m));
    call.on('error', () => {});
    await eventually(() => identify.calls >= 1, 3000, 'first build');
    await sleep(50);
    assert.equal(messages.length, 0);
    source.rotate(entry.id);
    source.notify();
    await eventually(() => messages.length === 1, 3000, 'message after mint');
    assert.equal(messages[0].svids[0].spiffe_id, entry.spiffeId);
    call.cancel();
  });

  it('pushes a rotation and sends nothing for a change that does not alter the view', async () => {
    const entry = source.add(makeEntry('/web', WEB));
    const messages: X509SvidResponse[] = [];
    const call = fetch();
    call.on('data', (m: X509SvidResponse) => messages.push(m));
    call.on('error', () => {});
    await eventually(() => messages.length === 1, 3000, 'first message');

    source.add(makeEntry('/unrelated', ['unix:uid:2000']));
    source.notify();
    source.notify();
    await sleep(50);
    assert.equal(messages.length, 1, 'no message for an unrelated change');
    assert.equal(identify.calls, 1, 'no re-identification when nothing is sent');

    const rotated = source.rotate(entry.id);
    source.notify();
    await eventually(() => messages.length === 2, 3000, 'rotation pushed');
    assert.equal(identify.calls, 2, 're-identified before sending');
    assert.ok(messages[1].svids[0].x509_svid.equals(rotated.chain[0]));
    assert.ok(!messages[1].svids[0].x509_svid.equals(messages[0].svids[0].x509_svid));
    call.cancel();
  });

  it('answers PermissionDenied with no message to a caller without identity', async () => {
    source.add(makeEntry('/web', WEB));
    const none = await collect(fetch('nobody'));
    assert.equal(none.error?.code, status.PERMISSION_DENIED);
    assert.equal(none.error?.details, 'no identity issued');
    assert.deepEqual(none.messages, []);
    const unknown = await collect(fetch('stranger'));
    assert.equal(unknown.error?.code, status.PERMISSION_DENIED);
    assert.deepEqual(unknown.messages, []);
    assert.equal(source.liveSubscriptions, 0);
  });

  it('ends the stream with PermissionDenied when the last entry is removed', async () => {
    const entry = source.add(makeEntry('/web', WEB));
    const call = fetch();
    const result = collect(call);
    await eventually(() => identify.calls >= 1 && source.liveSubscriptions === 1, 3000, 'stream open');
    await sleep(20);
    source.remove(entry.id);
    source.notify();
    const { messages, error } = await result;
    assert.equal(messages.length, 1);
    assert.equal(error?.code, status.PERMISSION_DENIED);
    assert.equal(source.liveSubscriptions, 0);
  });

  it('re-identifies the caller before each message and ends the stream with the status identify throws', async () => {
    const entry = source.add(makeEntry('/web', WEB));
    let processChanged = false;
    const changing: IdentifyCaller = async (call) => {
      if (processChanged) throw new EmblemError('unavailable', 'caller process changed');
      return identify(call);
    };
    await h.close();
    h = await startHarness({ source, identify: changing });
    const result = collect(fetch());
    await eventually(() => identify.calls === 1, 3000, 'first identification');
    processChanged = true;
    source.rotate(entry.id);
    source.notify();
    const { messages, error } = await result;
    assert.equal(messages.length, 1);
    assert.equal(error?.code, status.UNAVAILABLE);
    assert.equal(error?.details, 'caller process changed');
  });

  it('releases subscriptions of cancelled streams and reports metrics', async () => {
    source.add(makeEntry('/web', WEB));
    const open = new Map<WorkloadApiMethod, number>();
    const ended: Array<[WorkloadApiMethod, status]> = [];
    await h.close();
    h = await startHarness({
      source,
      identify,
      metrics: {
        streamsOpen: (m, d) => open.set(m, (open.get(m) ?? 0) + d),
        callEnded: (m, c) => ended.push([m, c]),
      },
    });
    const calls = Array.from({ length: 5 }, () => fetch());
    const firsts = calls.map((c) => new Promise((r) => c.once('data', r)));
    for (const c of calls) c.on('error', () => {});
    await Promise.all(firsts);
    assert.equal(source.liveSubscriptions, 5);
    assert.equal(open.get('FetchX509SVID'), 5);
    for (const c of calls) c.cancel();
    await eventually(() => source.liveSubscriptions === 0, 3000, 'all unsubscribed');
    assert.equal(open.get('FetchX509SVID'), 0);
    assert.deepEqual(ended, Array(5).fill(['FetchX509SVID', status.CANCELLED]));
  });

  it('coalesces updates for a client that stops reading and finally delivers the latest state', async () => {
    // Big messages (a 40-CA bundle, ~20 KB each) so that HTTP/2 flow control stops the server soon.
    const bigPki = await makePki(TD, 40);
    const bigSource = new FakeSource(bigPki);
    let sent = 0;
    let serverCall: ServerWritableStream<unknown, unknown> | undefined;
    const capture: IdentifyCaller = async (call) => {
      serverCall = call as ServerWritableStream<unknown, unknown>;
      return identify(call);
    };
    await h.close();
    h = await startHarness({ source: bigSource, identify: capture, metrics: { messageSent: () => sent++ } });
    const entry = bigSource.add(makeEntry('/web', WEB));
    const variants = [0, 1, 2].map(() => mintIdentity(bigPki, entry));
    const latest = mintIdentity(bigPki, entry);

    const call = open<X509SvidResponse>(h.client, 'FetchX509SVID', md('web'));
    call.on('error', () => {});
    await new Promise((r) => call.once('data', r));
    call.pause();

    const changes = 1000;
    for (let i = 0; i < changes; i++) {
      bigSource.identities.set(entry.id, i === changes - 1 ? latest : variants[i % 3]);
      bigSource.notify();
      await new Promise((r) => setImmediate(r));
    }
    await sleep(200);
    const sentWhilePaused = sent;
    assert.ok(sentWhilePaused < 100, `server handed ${sentWhilePaused} messages to a paused client`);
    assert.ok((serverCall?.writableLength ?? 99) <= 1, `server buffered ${serverCall?.writableLength} messages`);

    const received: X509SvidResponse[] = [];
    const done = new Promise<void>((resolve) =>
      call.on('data', (m: X509SvidResponse) => {
        received.push(m);
        if (m.svids[0].x509_svid.equals(latest.chain[0])) resolve();
      }),
    );
    call.resume();
    await done;
    await sleep(50);
    assert.ok(received[received.length - 1].svids[0].x509_svid.equals(latest.chain[0]), 'the last message is the latest state');
    assert.ok(received.length < 100, `client received ${received.length} messages`);
    call.cancel();
    await eventually(() => bigSource.liveSubscriptions === 0, 3000, 'unsubscribe');
  });
});
