// BatchNewX509SVID with its CSRs checked on worker threads, against a real server: per-item statuses,
// refusal log lines and signed SVIDs are those of the main-thread path, and authorisation comes
// before the CSR check. The same batch is sent before the workers exist (checked inline) and after
// they have logged that they are ready (checked on them).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { isEmblemError } from '../../src/common/errors.js';
import { readCertificate } from '../../src/common/x509/cert-info.js';
import { splitDerCertificates } from '../../src/common/x509/chain.js';
import { createCsr, parseCsr } from '../../src/common/x509/csr.js';
import { exportSpkiDer, generateKeyPair, type KeyPair } from '../../src/common/x509/keys.js';
import { INLINE_BELOW } from '../../src/server/ca/csr-verify-pool.js';
import { flipByte } from '../common/x509/fixtures.js';
import {
  assertNoSecretsLogged,
  attestWithJoinToken,
  eventually,
  joinTokenOf,
  startTestServer,
  type TestAgent,
  type TestServer,
} from '../helpers/server-harness.js';

interface EntryMsg {
  id: string;
  spiffe_id: string;
}

interface Item {
  entryId: string;
  csr: Buffer;
  /** Set for a CSR that should be signed. */
  keys?: KeyPair;
  expect: { code: number; message?: string };
}

const OK = 0;
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const REFUSAL_LOG = 'refused to sign: entry is not authorised for this agent';

function parseCsrMessage(der: Buffer): string {
  try {
    parseCsr(der);
  } catch (err) {
    if (isEmblemError(err)) return err.message;
  }
  throw new Error('expected parseCsr to refuse this CSR');
}

describe('BatchNewX509SVID with CSR verify workers', function () {
  this.timeout(30_000);
  let server: TestServer;
  let a: TestAgent;
  let b: TestAgent;
  let entriesA: EntryMsg[];
  let entryB: EntryMsg;

  before(async () => {
    server = await startTestServer({ csrVerifyWorkers: 2 });
    a = await attestWithJoinToken(server);
    b = await attestWithJoinToken(server);
    const td = server.trustDomain;
    const create = (fields: Record<string, unknown>) => server.admin.call<EntryMsg>('CreateEntry', fields);
    entriesA = await Promise.all(
      Array.from({ length: INLINE_BELOW + 4 }, (_, i) => create({ spiffe_id: `spiffe://${td}/a/w-${i}`, parent_id: a.id, selectors: [{ type: 'unix', value: `uid:${1000 + i}` }] })),
    );
    entryB = await create({ spiffe_id: `spiffe://${td}/b/w`, parent_id: b.id, selectors: [{ type: 'unix', value: 'uid:2000' }] });
  });

  after(async () => {
    a?.close();
    b?.close();
    await server?.stop();
  });

  /** More authorised CSRs than INLINE_BELOW, some bad, plus refused entries with garbage CSRs. */
  function mixedBatch(): Item[] {
    const items: Item[] = entriesA.map((entry, i) => {
      if (i % 5 === 1) {
        const csr = flipByte(createCsr(generateKeyPair()), -1);
        return { entryId: entry.id, csr, expect: { code: INVALID_ARGUMENT, message: parseCsrMessage(csr) } };
      }
      if (i % 5 === 3) {
        const csr = Buffer.from('junk');
        return { entryId: entry.id, csr, expect: { code: INVALID_ARGUMENT, message: parseCsrMessage(csr) } };
      }
      const keys = generateKeyPair();
      return { entryId: entry.id, csr: createCsr(keys), keys, expect: { code: OK } };
    });
    // Refused before any CSR check: a garbage CSR still gets PERMISSION_DENIED.
    items.splice(4, 0, { entryId: entryB.id, csr: Buffer.from('junk'), expect: { code: PERMISSION_DENIED, message: `entry ${entryB.id} is not authorised for this agent` } });
    items.splice(9, 0, { entryId: 'no-such-entry', csr: createCsr(generateKeyPair()), expect: { code: PERMISSION_DENIED, message: 'entry no-such-entry is not authorised for this agent' } });
    return items;
  }

  async function sendAndCheck(items: Item[]): Promise<void> {
    const logsBefore = server.logs.records().length;
    const results = await a.client.batchNewX509Svid(items.map((it) => ({ entry_id: it.entryId, csr: it.csr })));
    assert.equal(results.length, items.length);
    results.forEach((r, i) => {
      const item = items[i]!;
      assert.equal(r.entry_id, item.entryId, `result ${i} is out of order`);
      assert.equal(r.status?.code ?? OK, item.expect.code, `item ${i}: ${r.status?.message}`);
      if (item.expect.message) assert.equal(r.status?.message, item.expect.message, `item ${i}`);
      if (!item.keys) {
        assert.equal(r.svid_chain.length, 0, `item ${i} must carry no SVID`);
        return;
      }
      const leaf = splitDerCertificates(r.svid_chain)[0]!;
      const entry = entriesA.find((e) => e.id === item.entryId)!;
      assert.deepEqual(readCertificate(leaf).uris, [entry.spiffe_id], `item ${i}: identity from the entry`);
      assert.deepEqual(new X509Certificate(leaf).publicKey.export({ format: 'der', type: 'spki' }), exportSpkiDer(item.keys.publicKey), `item ${i}: certifies the CSR key`);
      assert.equal(r.expires_at, readCertificate(leaf).notAfter);
    });
    const refusals = server.logs.records().slice(logsBefore).filter((r) => r['msg'] === REFUSAL_LOG);
    assert.deepEqual(
      refusals.map((r) => [r['level'], r['entryId']]),
      [
        [40, entryB.id],
        [40, 'no-such-entry'],
      ],
      'one warning per refused entry, in request order',
    );
  }

  it('answers the same per item before and after the workers are up, refusing first and signing only good CSRs', async () => {
    const readyLogs = () => server.logs.records().filter((r) => r['msg'] === 'CSR verify worker ready').length;
    assert.equal(readyLogs(), 0, 'no worker before the first large batch');
    await sendAndCheck(mixedBatch());

    assert.ok(await eventually(() => readyLogs() === 2, 20_000), 'the first large batch starts both workers');
    await sendAndCheck(mixedBatch());

    const signed = mixedBatch().filter((it) => it.keys).length;
    const ledger = await server.admin.call<{ svids: { entry_id: string }[] }>('ListSVIDs', { agent_id: a.id });
    assert.equal(ledger.svids.filter((s) => s.entry_id !== '').length, 2 * signed, 'the ledger holds exactly the signed SVIDs');
    assertNoSecretsLogged(server.logs.text(), [joinTokenOf(a.id), joinTokenOf(b.id)]);
  });
});
