// The persisted forms of the agent's state and their JSON codecs. Buffers are stored as base64.
// Decoding is defensive: a record that does not have the expected shape is reported, never guessed.
import type { AgentEntry } from '../cache/types.js';
import { EmblemError } from '../../common/errors.js';

export type AttestationType = 'join_token' | 'x509pop';

/** The agent's own X.509-SVID. The private key is unencrypted PKCS#8 DER (at rest in the 0700 data dir). */
export interface StoredAgentSvid {
  agentId: string;
  attestationType: AttestationType;
  /** DER, leaf first. */
  chain: Buffer[];
  privateKeyPkcs8: Buffer;
}

/** A minted workload X.509-SVID with its key, so a restarted agent serves it at once. */
export interface StoredIdentity {
  entryId: string;
  /** Revision of the entry the SVID was minted for. */
  entryRevision: number;
  chain: Buffer[];
  privateKeyPkcs8: Buffer;
  /** Unix seconds. */
  notAfter: number;
  authorityId: string;
}

function corrupt(what: string): EmblemError {
  return new EmblemError('internal', `agent data directory: stored ${what} is corrupt (delete the data directory to start over)`);
}

const b64 = (b: Buffer): string => b.toString('base64');

function fromB64(v: unknown, what: string): Buffer {
  if (typeof v !== 'string') throw corrupt(what);
  return Buffer.from(v, 'base64');
}

function chainFrom(v: unknown, what: string): Buffer[] {
  if (!Array.isArray(v) || v.length === 0) throw corrupt(what);
  return v.map((c) => fromB64(c, what));
}

function parse(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw corrupt(what);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw corrupt(what);
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, k: string, what: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw corrupt(what);
  return v;
}

function num(o: Record<string, unknown>, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw corrupt(what);
  return v;
}

export function encodeAgentSvid(s: StoredAgentSvid): string {
  return JSON.stringify({ agentId: s.agentId, attestationType: s.attestationType, chain: s.chain.map(b64), key: b64(s.privateKeyPkcs8) });
}

export function decodeAgentSvid(text: string): StoredAgentSvid {
  const what = 'agent SVID';
  const o = parse(text, what);
  const attestationType = str(o, 'attestationType', what);
  if (attestationType !== 'join_token' && attestationType !== 'x509pop') throw corrupt(what);
  return { agentId: str(o, 'agentId', what), attestationType, chain: chainFrom(o.chain, what), privateKeyPkcs8: fromB64(o.key, what) };
}

export function encodeIdentity(s: StoredIdentity): string {
  return JSON.stringify({
    entryId: s.entryId,
    entryRevision: s.entryRevision,
    chain: s.chain.map(b64),
    key: b64(s.privateKeyPkcs8),
    notAfter: s.notAfter,
    authorityId: s.authorityId,
  });
}

export function decodeIdentity(text: string): StoredIdentity {
  const what = 'workload SVID';
  const o = parse(text, what);
  return {
    entryId: str(o, 'entryId', what),
    entryRevision: num(o, 'entryRevision', what),
    chain: chainFrom(o.chain, what),
    privateKeyPkcs8: fromB64(o.key, what),
    notAfter: num(o, 'notAfter', what),
    authorityId: str(o, 'authorityId', what),
  };
}

export function encodeEntry(e: AgentEntry): string {
  return JSON.stringify(e);
}

export function decodeEntry(text: string): AgentEntry {
  const what = 'entry';
  const o = parse(text, what);
  const selectors = o.selectors;
  const federatesWith = o.federatesWith;
  if (!Array.isArray(selectors) || !Array.isArray(federatesWith)) throw corrupt(what);
  return {
    id: str(o, 'id', what),
    spiffeId: str(o, 'spiffeId', what),
    parentId: str(o, 'parentId', what),
    selectors: selectors.map((s: unknown) => {
      const sel = s as Record<string, unknown>;
      if (sel === null || typeof sel !== 'object') throw corrupt(what);
      return { type: str(sel, 'type', what), value: str(sel, 'value', what) };
    }),
    federatesWith: federatesWith.map((td: unknown) => {
      if (typeof td !== 'string') throw corrupt(what);
      return td;
    }),
    hint: str(o, 'hint', what),
    jwtSvidTtl: num(o, 'jwtSvidTtl', what),
    createdAt: num(o, 'createdAt', what),
    revision: num(o, 'revision', what),
  };
}
