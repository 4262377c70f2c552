// BatchNewX509SVID checks authorisation again after the (possibly off-thread) CSR checks: an entry
// deleted, or an agent banned, while its CSRs were being checked gets no SVID. The server's CSR
// checker is wrapped so that the test holds a batch at exactly that point.
import assert from 'node:assert/strict';
import type { CsrVerifyPool } from '../../src/server/ca/csr-verify-pool.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { attestWithJoinToken, eventually, startTestServer, type TestAgent, type TestServer } from '../helpers/server-harness.js';

const PERMISSION_DENIED = 7;

interface EntryMsg {
  id: string;
}

describe('BatchNewX509SVID re-checks authorisation after the CSR checks', function () {
  this.timeout(30_000);
  let server: TestServer;
  let agent: TestAgent;
  /** Set by a test: the CSR checks of the next batch wait for it. */
  let gate: { entered: () => void; release: Promise<void> } | undefined;

  const hold = (verifier: Pick<CsrVerifyPool, 'verify'>): Pick<CsrVerifyPool, 'verify'> => ({
    async verify(csrs) {
      const g = gate;
      gate = undefined;
      const checks = await verifier.verify(csrs);
      if (g) {
        g.entered();
        await g.release;
      }
      return checks;
    },
  });

  /** Arms the gate; returns when a batch is held in it, and the function that lets it go. */
  function armGate(): { held: Promise<void>; release: () => void } {
    let entered!: () => void;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (entered = resolve));
    gate = { entered, release: new Promise<void>((resolve) => (release = resolve)) };
    return { held, release };
  }

  beforeEach(async () => {
    server = await startTestServer({ csrVerifyWorkers: 0 }, { hooks: { wrapCsrVerifier: hold } });
    agent = await attestWithJoinToken(server);
  });
  afterEach(async () => {
    agent?.close();
    await server?.stop();
  });

  const createEntries = (n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        server.admin.call<EntryMsg>('CreateEntry', {
          spiffe_id: `spiffe://${server.trustDomain}/recheck/w-${i}`,
          parent_id: agent.id,
          selectors: [{ type: 'unix', value: `uid:${3000 + i}` }],
        }),
      ),
    );

  it('refuses an entry deleted while its CSR was being checked, and signs the others', async () => {
    const [kept, deleted] = await createEntries(2);
    const { held, release } = armGate();
    const call = agent.client.batchNewX509Svid([kept!, deleted!].map((e) => ({ entry_id: e.id, csr: createCsr(generateKeyPair()) })));
    await held;
    await server.admin.call('DeleteEntry', { id: deleted!.id });
    release();
    const [r0, r1] = await call;
    assert.equal(r0!.status?.code ?? 0, 0);
    assert.ok(r0!.svid_chain.length > 0, 'the entry still there is signed');
    assert.equal(r1!.status?.code, PERMISSION_DENIED);
    assert.equal(r1!.svid_chain.length, 0, 'no SVID for the deleted entry');
    const ledger = await server.admin.call<{ svids: { entry_id: string }[] }>('ListSVIDs', { agent_id: agent.id });
    assert.deepEqual(ledger.svids.map((s) => s.entry_id).filter((id) => id !== ''), [kept!.id]);
  });

  it('refuses every entry of an agent banned while its CSRs were being checked', async () => {
    const entries = await createEntries(3);
    const { held, release } = armGate();
    const call = agent.client.batchNewX509Svid(entries.map((e) => ({ entry_id: e.id, csr: createCsr(generateKeyPair()) })));
    await held;
    await server.admin.call('BanAgent', { id: agent.id });
    assert.ok(await eventually(async () => {
      const shown = await server.admin.call<{ banned: boolean }>('GetAgent', { id: agent.id });
      return shown.banned;
    }, 5000));
    release();
    const results = await call;
    assert.equal(results.length, 3);
    for (const r of results) {
      assert.equal(r.status?.code, PERMISSION_DENIED);
      assert.equal(r.svid_chain.length, 0);
    }
    const ledger = await server.admin.call<{ svids: { entry_id: string }[] }>('ListSVIDs', { agent_id: agent.id });
    assert.deepEqual(ledger.svids.filter((s) => s.entry_id !== ''), [], 'nothing signed for the banned agent');
  });
});
