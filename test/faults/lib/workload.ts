// What fault tests do as an operator and as a workload: write the bootstrap bundle, register the
// test process (uid) as a workload of an agent, fetch and watch X509-SVIDs over the Workload API,
// and check SVIDs against a bundle.
import { writeFileSync } from 'node:fs';
import { connectWorkloadApi, type X509SvidResponseMsg } from '../../../src/agent/cli/workload-client.js';
import type { EntryMsg } from '../../../src/agent/client/messages.js';
import { certificatesToPem } from '../../../src/common/pem.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { splitDerCertificates } from '../../../src/common/x509/chain.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { fetchBundle, type ServerTarget } from '../../helpers/server-harness.js';

export interface HeldSvid {
  spiffeId: string;
  chain: Buffer[];
  /** PKCS#8 DER of the SVID key. */
  key: Buffer;
  /** X.509 authorities the agent sent with it. */
  bundle: Buffer[];
  serial: string;
  notAfter: number;
}

export function toHeld(res: X509SvidResponseMsg): HeldSvid[] {
  return res.svids.map((s) => {
    const chain = splitDerCertificates(s.x509_svid);
    const leaf = readCertificate(chain[0]!);
    return { spiffeId: s.spiffe_id, chain, key: s.x509_svid_key, bundle: splitDerCertificates(s.bundle), serial: leaf.serial, notAfter: leaf.notAfter };
  });
}

/** Writes the server's current X.509 bundle as PEM (what `bundle show` prints). */
export async function writeBundlePem(server: ServerTarget, path: string): Promise<Buffer[]> {
  const bundle = await fetchBundle(server);
  writeFileSync(path, certificatesToPem(bundle.x509Authorities));
  return bundle.x509Authorities;
}

/** An entry for this test process (its uid) under `parentId`. */
export function registerWorkload(server: ServerTarget, parentId: string, path: string, extra: Record<string, unknown> = {}): Promise<EntryMsg> {
  return server.admin.call<EntryMsg>('CreateEntry', {
    spiffe_id: `spiffe://${server.trustDomain}${path}`,
    parent_id: parentId,
    selectors: [{ type: 'unix', value: `uid:${process.getuid!()}` }],
    ...extra,
  });
}

/** One FetchX509SVID answer. */
export async function fetchSvids(socket: string, timeoutMs = 5000): Promise<HeldSvid[]> {
  const client = connectWorkloadApi({ kind: 'unix', path: socket });
  try {
    return toHeld(await client.fetchX509(timeoutMs));
  } finally {
    client.close();
  }
}

/** Fetches until `accept` holds for the answer (an agent may still be minting), or fails. */
export async function fetchUntil(socket: string, accept: (svids: HeldSvid[]) => boolean, timeoutMs = 10_000): Promise<HeldSvid[]> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const svids = await fetchSvids(socket, 2000);
      if (accept(svids)) return svids;
      last = `got ${svids.map((s) => `${s.spiffeId}#${s.serial}`).join(', ') || 'no SVIDs'}`;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`Workload API on ${socket} never gave the expected SVIDs: ${last instanceof Error ? last.message : String(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface SvidWatch {
  /** Every answer, with its arrival time (Date.now()). */
  updates: { svids: HeldSvid[]; at: number }[];
  /** Set when the stream ended. */
  ended?: { at: number; error?: Error };
  latest(): HeldSvid[] | undefined;
  cancel(): void;
}

/** A FetchX509SVID stream kept open, as a long-running workload would. */
export function watchSvids(socket: string): SvidWatch {
  const client = connectWorkloadApi({ kind: 'unix', path: socket });
  const watch: SvidWatch = {
    updates: [],
    latest: () => watch.updates.at(-1)?.svids,
    cancel: () => {
      stream.cancel();
      client.close();
    },
  };
  const stream = client.watchX509(
    (res) => watch.updates.push({ svids: toHeld(res), at: Date.now() }),
    (error) => {
      watch.ended = { at: Date.now(), ...(error ? { error } : {}) };
    },
  );
  return watch;
}

/** Throws unless `svid` verifies against `anchors` at `nowMs`. */
export function assertChainsTo(svid: Pick<HeldSvid, 'chain' | 'spiffeId' | 'serial'>, anchors: readonly Buffer[], nowMs = Date.now()): void {
  try {
    verifyX509SvidChain(svid.chain, () => anchors, nowMs);
  } catch (err) {
    throw new Error(`SVID ${svid.spiffeId} (serial ${svid.serial}) does not verify: ${(err as Error).message}`, { cause: err });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
