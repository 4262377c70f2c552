// Issues X509-SVIDs and JWT-SVIDs with the active authorities and records each one in the issuance
// ledger before handing it out: a caller that got an SVID back can rely on it being in the ledger.
// X.509 batches are signed synchronously (no await per certificate) and recorded with one write.
import { createHash, type KeyObject } from 'node:crypto';
import { EmblemError, invalidArgument } from '../../common/errors.js';
import { mintJwtSvid } from '../../common/jwt-svid.js';
import type { Logger } from '../../common/logger.js';
import { parseSpiffeIdInTrustDomain, parseTrustDomain, serverId } from '../../common/spiffe-id.js';
import { mintX509Svid } from '../../common/x509/leaf.js';
import type { Datastore, SvidRecord } from '../datastore/types.js';
import type { AuthorityManager } from './authority-manager.js';

export interface SvidDefaults {
  /** Seconds; default 3600. */
  x509SvidTtl: number;
  /** Seconds; default 300. */
  jwtSvidTtl: number;
  /** Seconds; default 3600. */
  agentSvidTtl: number;
}

export const DEFAULT_SVID_TTLS: Readonly<SvidDefaults> = { x509SvidTtl: 3600, jwtSvidTtl: 300, agentSvidTtl: 3600 };

export interface X509SvidRequest {
  spiffeId: string;
  /** KeyObject or SubjectPublicKeyInfo DER. */
  publicKey: KeyObject | Buffer;
  dnsNames?: string[];
  /** Seconds; 0 or absent = the default for `kind`. */
  ttlSeconds?: number;
  /** Registration entry ID ('' for agent and server SVIDs). */
  entryId: string;
  /** The agent the SVID is issued to or through ('' for the server's own). */
  agentId: string;
  kind: 'x509' | 'agent';
}

export interface SignedX509Svid {
  /** Leaf first, then the intermediates up to but excluding the bundle root. */
  chain: Buffer[];
  /** Lowercase hex. */
  serial: string;
  /** Unix seconds. */
  notBefore: number;
  notAfter: number;
  authorityId: string;
}

export interface JwtSvidRequest {
  spiffeId: string;
  audience: string[];
  /** Seconds; 0 or absent = default. */
  ttlSeconds?: number;
  entryId: string;
  agentId: string;
}

export interface SignedJwtSvid {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
  authorityId: string;
}

export interface SvidSigner {
  signX509Batch(requests: readonly X509SvidRequest[]): Promise<SignedX509Svid[]>;
  signJwt(request: JwtSvidRequest): Promise<SignedJwtSvid>;
  /** The server's own TLS identity spiffe://<td>/emblem/server (no DNS names: peers check the SPIFFE ID). */
  signServerSvid(request: { publicKey: KeyObject | Buffer; ttlSeconds?: number }): Promise<SignedX509Svid>;
}

export interface SvidSignerOptions {
  authorities: Pick<AuthorityManager, 'activeX509' | 'activeJwt'>;
  datastore: Pick<Datastore, 'recordSvids'>;
  trustDomain: string;
  defaults?: Partial<SvidDefaults>;
  logger: Logger;
  /** Milliseconds since the epoch; for tests. */
  now?: () => number;
}

/** The ledger's token ID of a JWT-SVID: hex of the first 16 bytes of its SHA-256. */
export function jwtTokenId(token: string): string {
  return createHash('sha256').update(token).digest().subarray(0, 16).toString('hex');
}

function checkTtl(ttl: number | undefined, what: string): number {
  const value = ttl ?? 0;
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${what}: ttlSeconds must be a whole number of seconds >= 0, got ${ttl}`);
  return value;
}

export function createSvidSigner(options: SvidSignerOptions): SvidSigner {
  const { authorities, datastore, logger } = options;
  const trustDomain = parseTrustDomain(options.trustDomain);
  const defaults: SvidDefaults = { ...DEFAULT_SVID_TTLS, ...options.defaults };
  for (const [name, value] of Object.entries(defaults)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw invalidArgument(`default ${name} must be a positive whole number of seconds`);
  }
  const clock = options.now ?? Date.now;

  async function signX509Batch(requests: readonly X509SvidRequest[]): Promise<SignedX509Svid[]> {
    if (!Array.isArray(requests)) throw invalidArgument('requests must be an array');
    if (requests.length === 0) return [];
    // Check everything first, so a bad request signs and records nothing.
    const ttls = requests.map((r, i) => {
      const what = `request ${i}`;
      if (r.kind !== 'x509' && r.kind !== 'agent') throw invalidArgument(`${what}: kind must be "x509" or "agent"`);
      parseSpiffeIdInTrustDomain(r.spiffeId, trustDomain);
      if (typeof r.entryId !== 'string' || typeof r.agentId !== 'string') throw invalidArgument(`${what}: entryId and agentId must be strings`);
      const ttl = checkTtl(r.ttlSeconds, what);
      return ttl > 0 ? ttl : r.kind === 'agent' ? defaults.agentSvidTtl : defaults.x509SvidTtl;
    });

    const { issuer, authority } = authorities.activeX509();
    const nowMs = clock();
    const issuedAt = Math.floor(nowMs / 1000);
    const signed: SignedX509Svid[] = new Array(requests.length);
    const ledger: SvidRecord[] = new Array(requests.length);
    for (let i = 0; i < requests.length; i++) {
      const r = requests[i]!;
      // mintX509Svid caps notAfter at the CA's notAfter: no SVID outlives its signing authority.
      const svid = mintX509Svid(issuer, { spiffeId: r.spiffeId, publicKey: r.publicKey, dnsNames: r.dnsNames, ttlSeconds: ttls[i]!, now: nowMs });
      signed[i] = {
        chain: [svid.der, ...issuer.intermediates],
        serial: svid.serial,
        notBefore: svid.notBefore,
        notAfter: svid.notAfter,
        authorityId: authority.id,
      };
      ledger[i] = {
        serial: svid.serial,
        spiffeId: r.spiffeId,
        entryId: r.entryId,
        agentId: r.agentId,
        kind: r.kind,
        notBefore: svid.notBefore,
        notAfter: svid.notAfter,
        authorityId: authority.id,
        issuedAt,
      };
    }
    await datastore.recordSvids(ledger);
    logger.debug({ count: signed.length, authorityId: authority.id }, 'X509-SVIDs issued');
    return signed;
  }

  async function signJwt(request: JwtSvidRequest): Promise<SignedJwtSvid> {
    parseSpiffeIdInTrustDomain(request.spiffeId, trustDomain);
    const requested = checkTtl(request.ttlSeconds, 'JWT-SVID');
    const { privateKey, kid, authority } = authorities.activeJwt();
    const nowMs = clock();
    const nowSec = Math.floor(nowMs / 1000);
    // A JWT-SVID never outlives the key that signed it: the key leaves the bundle after its notAfter.
    const ttl = Math.min(requested > 0 ? requested : defaults.jwtSvidTtl, authority.notAfter - nowSec);
    if (ttl <= 0) throw new EmblemError('unavailable', `JWT signing key ${kid} has expired`);
    const minted = await mintJwtSvid({ privateKey, kid, spiffeId: request.spiffeId, audience: request.audience, ttlSeconds: ttl, now: nowMs });
    await datastore.recordSvids([
      {
        serial: jwtTokenId(minted.token),
        spiffeId: request.spiffeId,
        entryId: request.entryId,
        agentId: request.agentId,
        kind: 'jwt',
        notBefore: minted.issuedAt,
        notAfter: minted.expiresAt,
        authorityId: authority.id,
        issuedAt: minted.issuedAt,
      },
    ]);
    return { token: minted.token, expiresAt: minted.expiresAt, authorityId: authority.id };
  }

  async function signServerSvid(request: { publicKey: KeyObject | Buffer; ttlSeconds?: number }): Promise<SignedX509Svid> {
    const [svid] = await signX509Batch([
      { spiffeId: serverId(trustDomain), publicKey: request.publicKey, ttlSeconds: request.ttlSeconds, entryId: '', agentId: '', kind: 'x509' },
    ]);
    return svid!;
  }

  return { signX509Batch, signJwt, signServerSvid };
}
