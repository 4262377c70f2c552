// SIGKILL of a real emblem-server process while a client creates 1,000 entries (16 in flight), three
// times at random points. After each restart: every create that returned success is there exactly
// as returned; what was in flight is either wholly there or wholly absent (its similar-entry index
// key included); revisions keep growing; and the trust bundle, the CA journal and the CA key files
// are byte-for-byte unchanged.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { EntryMsg } from '../../src/agent/client/messages.js';
import { isEmblemError } from '../../src/common/errors.js';
import { spawnServer, type ChildServer } from '../helpers/server-harness.js';
import { recordOutput, recordServerKeys } from './lib/run-log.js';

const ENTRIES = 1000;
const IN_FLIGHT = 16;
const ROUNDS = 3;

interface Snapshot {
  bundle: string;
  sequence: number;
  authorities: string;
  keys: Map<string, { pem: string; mode: number }>;
}

async function snapshot(server: ChildServer): Promise<Snapshot> {
  const b = await server.admin.call<{ bundle: Buffer; sequence: number }>('GetBundle');
  const a = await server.admin.call<{ authorities: unknown[] }>('ListAuthorities');
  const dir = join(server.dataDir, 'keys');
  const keys = new Map(readdirSync(dir).map((f) => [f, { pem: readFileSync(join(dir, f), 'utf8'), mode: statSync(join(dir, f)).mode & 0o777 }]));
  return { bundle: b.bundle.toString('utf8'), sequence: b.sequence, authorities: JSON.stringify(a.authorities), keys };
}

async function listAll(server: ChildServer, filter: Record<string, unknown> = {}): Promise<EntryMsg[]> {
  const out: EntryMsg[] = [];
  let token = '';
  do {
    const page = await server.admin.call<{ entries: EntryMsg[]; next_page_token: string }>('ListEntries', { ...filter, page_size: 500, page_token: token });
    out.push(...page.entries);
    token = page.next_page_token;
  } while (token);
  return out;
}

function request(td: string, round: number, i: number): Record<string, unknown> {
  return {
    spiffe_id: `spiffe://${td}/crash/r${round}/w${i}`,
    parent_id: `spiffe://${td}/crash/node`,
    selectors: [
      { type: 'unix', value: `uid:${1000 + i}` },
      { type: 'unix', value: `gid:${round}` },
    ],
    dns_names: [`w${i}.r${round}.example.test`],
    hint: `round ${round} workload ${i}`,
  };
}

/** The fields a client asked for, as the server returns them. */
const asked = (e: EntryMsg) => ({
  spiffe_id: e.spiffe_id,
  parent_id: e.parent_id,
  selectors: [...e.selectors].map((s) => `${s.type}:${s.value}`).sort(),
  dns_names: e.dns_names,
  hint: e.hint,
});
const askedOf = (r: Record<string, unknown>) =>
  asked({ ...(r as unknown as EntryMsg) });

describe('faults: SIGKILL the server while a client creates 1,000 entries', function () {
  this.timeout(120_000);
  let server: ChildServer;

  before(async () => {
    server = await spawnServer();
    recordOutput('crash-entries server', () => server.stderr());
  });

  after(async () => {
    if (server) recordServerKeys(server.dataDir);
    await server?.stop();
  });

  it(`keeps every acknowledged entry, tears none, and leaves bundle and CA keys alone (${ROUNDS} kills)`, async () => {
    const td = server.trustDomain;
    const before = await snapshot(server);
    assert.ok(before.keys.size >= 2, 'the server has X.509 and JWT authority key files');
    const acked = new Map<string, EntryMsg>(); // spiffe_id -> returned entry
    const report: string[] = [];
    let maxRevision = 0;

    for (let round = 0; round < ROUNDS; round++) {
      const killAt = 100 + Math.floor(Math.random() * 800);
      const attempted = new Map<string, Record<string, unknown>>(); // spiffe_id -> request
      const roundAcked: EntryMsg[] = [];
      let killed: Promise<void> | undefined;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (!killed && next < ENTRIES) {
          const req = request(td, round, next++);
          attempted.set(req.spiffe_id as string, req);
          try {
            const entry = await server.admin.call<EntryMsg>('CreateEntry', req);
            roundAcked.push(entry);
            if (roundAcked.length >= killAt) killed ??= server.kill();
          } catch (err) {
            if (!killed) throw err; // before the kill every create must succeed
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      assert.ok(killed, `round ${round}: the server was killed mid-run`);
      await killed;
      for (const e of roundAcked) acked.set(e.spiffe_id, e);

      await server.restart();

      const entries = await listAll(server);
      const bySpiffeId = new Map(entries.map((e) => [e.spiffe_id, e]));
      assert.equal(bySpiffeId.size, entries.length, 'no SPIFFE ID appears twice');
      for (const [id, e] of acked) assert.deepEqual(bySpiffeId.get(id), e, `acknowledged entry ${id} is there exactly as returned`);
      const ackedHere = new Set(roundAcked.map((e) => e.spiffe_id));
      const unacked = [...attempted.keys()].filter((id) => !ackedHere.has(id));
      let landed = 0;
      for (const id of unacked) {
        const e = bySpiffeId.get(id);
        if (!e) continue;
        landed++;
        assert.deepEqual(asked(e), askedOf(attempted.get(id)!), `in-flight entry ${id} is complete`);
      }
      const landedEntries = unacked.flatMap((id) => bySpiffeId.get(id) ?? []);
      for (const e of entries) assert.ok(acked.has(e.spiffe_id) || attempted.has(e.spiffe_id), `entry ${e.spiffe_id} was asked for`);
      assert.equal(entries.length, acked.size + landed);
      for (const e of landedEntries) acked.set(e.spiffe_id, e); // committed: later rounds must keep it
      const count = await server.admin.call<{ count: number }>('CountEntries', {});
      assert.equal(Number(count.count), entries.length, 'the count agrees with the listing');

      // Indexes: the similar-entry key of an acknowledged entry still refuses a duplicate; an
      // in-flight create that did not land left no key behind, so it can be made now.
      const someAcked = roundAcked[Math.floor(Math.random() * roundAcked.length)]!;
      await assert.rejects(
        server.admin.call('CreateEntry', request(td, round, Number(/w(\d+)$/.exec(someAcked.spiffe_id)![1]))),
        (err: unknown) => isEmblemError(err, 'already_exists'),
      );
      const lost = unacked.filter((id) => !bySpiffeId.has(id)).slice(0, IN_FLIGHT);
      for (const id of lost) {
        const made = await server.admin.call<EntryMsg>('CreateEntry', attempted.get(id)!);
        acked.set(made.spiffe_id, made);
      }
      const bySelector = await listAll(server, { selectors: [{ type: 'unix', value: `gid:${round}` }] });
      assert.equal(bySelector.length, roundAcked.length + landed + lost.length, 'the selector index finds the round');

      // Revisions keep growing: nothing committed before the crash is reused.
      const roundMax = Math.max(...entries.map((e) => e.revision));
      assert.ok(roundMax >= maxRevision);
      const probe = await server.admin.call<EntryMsg>('CreateEntry', { ...request(td, round, ENTRIES), hint: 'after restart' });
      assert.ok(probe.revision > roundMax, `new revision ${probe.revision} > ${roundMax}`);
      acked.set(probe.spiffe_id, probe);
      maxRevision = probe.revision;

      const now = await snapshot(server);
      assert.equal(now.bundle, before.bundle, 'trust bundle unchanged');
      assert.equal(now.sequence, before.sequence, 'bundle sequence unchanged');
      assert.equal(now.authorities, before.authorities, 'CA journal unchanged');
      assert.deepEqual(now.keys, before.keys, 'CA key files unchanged (contents and modes)');
      report.push(`round ${round}: killed after ${roundAcked.length} acks, ${landed} in-flight landed, ${unacked.length - landed} not`);
    }
    console.log(`      ${report.join('; ')}`);
  });
});
