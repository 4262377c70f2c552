// Open FetchX509SVID streams of a real agent process follow the server: a short-lived SVID is
// renewed (new serial, same stream) before the old one expires, and deleting entries removes their
// SVIDs from the stream at once (PERMISSION_DENIED when the last one goes).
//
// Rotation trigger: the server's default X.509-SVID TTL (--x509-svid-ttl 20s; an entry TTL of 0 means
// the server default; entry TTLs start at 60 s). The server backdates notBefore by 10 s, so the SVID
// lives 30 s and the agent renews it at half-life ±10%: 3.5-6.5 s after issuance.
import assert from 'node:assert/strict';
import type { X509SvidResponseMsg } from '../../../src/agent/cli/workload-client.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { splitDerCertificates } from '../../../src/common/x509/chain.js';
import { assertSpecValidX509Response, idsOf, startSystem, waitForIdentity, watchX509, type TestSystem } from '../../helpers/system-harness.js';

const OWN_UID = process.getuid!();

describe('e2e: rotation and deletion on open Workload API streams', function () {
  this.timeout(30_000);
  let sys: TestSystem;

  before(async function () {
    sys = await startSystem({ serverConfig: { x509SvidTtl: '20s' } });
  });

  after(async function () {
    await sys?.stop();
  });

  const leafOf = (res: X509SvidResponseMsg, spiffeId: string) => {
    const svid = res.svids.find((s) => s.spiffe_id === spiffeId);
    assert.ok(svid, `${spiffeId} is not in the message`);
    return readCertificate(splitDerCertificates(svid.x509_svid)[0]!);
  };

  it('a short-lived SVID rotates on the open stream before it expires', async function () {
    const id = `spiffe://${sys.trustDomain}/rotating`;
    await sys.createEntry('/rotating', OWN_UID);
    await waitForIdentity(sys.client(), id);
    const watch = watchX509(sys.client());
    try {
      const first = await watch.waitFor((r) => idsOf(r).includes(id), 5000);
      const old = leafOf(first, id);
      assert.ok(old.notAfter - old.notBefore <= 31, `lifetime ${old.notAfter - old.notBefore} s: the server TTL applies`);
      const started = Date.now();
      const next = await watch.waitFor((r) => idsOf(r).includes(id) && leafOf(r, id).serial !== old.serial, 15_000);
      const arrived = Date.now();
      const renewed = leafOf(next, id);
      assert.equal(watch.isEnded(), false, 'the same stream carries the renewal');
      assert.ok(arrived / 1000 < old.notAfter, 'the new SVID arrives before the old one expires');
      assert.ok(renewed.notAfter > old.notAfter);
      assertSpecValidX509Response(next, sys.trustDomain);
      // Renewal is due at notBefore + lifetime/2 × (1 ± 10%).
      const lifetime = old.notAfter - old.notBefore;
      const due = (old.notBefore + lifetime * 0.45) * 1000;
      assert.ok(arrived >= due - 1000, `renewed ${due - arrived} ms before half-life −10%`);
      console.log(`      rotation: new serial ${arrived - started} ms after the first message; old SVID had ${old.notAfter - Math.floor(arrived / 1000)} s left`);
    } finally {
      watch.cancel();
    }
  });

  it('deleting one of two entries sends a message without it; deleting the last ends the stream with PERMISSION_DENIED', async function () {
    const rotating = `spiffe://${sys.trustDomain}/rotating`;
    const kept = `spiffe://${sys.trustDomain}/kept`;
    const { entries } = await sys.server.admin.call<{ entries: { id: string; spiffe_id: string }[] }>('ListEntries', {});
    const rotatingEntry = entries.find((e) => e.spiffe_id === rotating)!;
    const keptEntry = await sys.createEntry('/kept', OWN_UID);
    const watch = watchX509(sys.client());
    try {
      await watch.waitFor((r) => idsOf(r).includes(kept) && idsOf(r).includes(rotating), 5000);
      const from = watch.updates.length;
      let t0 = performance.now();
      await sys.deleteEntry(rotatingEntry.id);
      const after = await watch.waitFor((r) => !idsOf(r).includes(rotating), 1000, from);
      const removeMs = performance.now() - t0;
      assert.deepEqual(idsOf(after), [kept]);
      assertSpecValidX509Response(after, sys.trustDomain);

      t0 = performance.now();
      await sys.deleteEntry(keptEntry.id);
      const err = await Promise.race([watch.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 1000))]);
      const endMs = performance.now() - t0;
      if (err === 'open') assert.fail('the stream is still open 1 s after its last entry was deleted');
      assert.equal(err?.code, 'permission_denied', String(err));
      console.log(`      delete: one of two removed after ${removeMs.toFixed(0)} ms; last one ended the stream after ${endMs.toFixed(0)} ms`);
    } finally {
      watch.cancel();
    }

    // A new call is refused too, with no message.
    await assert.rejects(sys.client().fetchX509(3000), (e: unknown) => (e as { code?: string }).code === 'permission_denied');
  });
});
