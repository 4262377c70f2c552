// Builds new authorities (journal rows in status 'prepared') from freshly generated keys: a
// self-signed X.509 CA, an intermediate signed by the configured upstream CA, or a JWT signing key.
import { X509Certificate, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';
import { jwkThumbprintKid } from '../../common/jwt-svid.js';
import { createIntermediateCa, createSelfSignedCa } from '../../common/x509/ca.js';
import { prepareIssuer, type Issuer } from '../../common/x509/issuer.js';
import type { KeyPair } from '../../common/x509/keys.js';
import type { AuthorityRecord } from '../datastore/types.js';

export interface UpstreamConfig {
  /** DER CA certificate that signs our intermediates. */
  certificate: Buffer;
  /** DER certificates above `certificate`, nearest first, ending at the self-signed root (empty when `certificate` is the root). */
  chain?: Buffer[];
  privateKey: KeyObject;
}

/** A checked upstream CA. */
export interface UpstreamCa {
  certificate: Buffer;
  privateKey: KeyObject;
  /** [certificate, ...chain]: what AuthorityRecord.upstreamChain stores; the last one is the root. */
  fullChain: Buffer[];
  root: Buffer;
  notAfter: number;
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** Checks that the upstream key matches its certificate and that the chain ends at a self-signed root. */
export function checkUpstream(config: UpstreamConfig): UpstreamCa {
  const fullChain = [config.certificate, ...(config.chain ?? [])];
  // prepareIssuer checks cA, keyCertSign, the key match and every link below the root.
  const issuer = prepareIssuer(config.certificate, config.privateKey, fullChain.slice(1, -1));
  const root = fullChain[fullChain.length - 1]!;
  let rootCert: X509Certificate;
  try {
    rootCert = new X509Certificate(root);
  } catch (err) {
    throw invalidArgument('upstream root certificate cannot be parsed', err);
  }
  if (!isSelfSigned(rootCert)) {
    throw invalidArgument('the upstream chain must end at a self-signed root CA (give the chain up to and including the root)');
  }
  if (fullChain.length > 1) {
    const top = new X509Certificate(fullChain[fullChain.length - 2]!);
    if (!top.checkIssued(rootCert) || !top.verify(rootCert.publicKey)) {
      throw invalidArgument('the upstream root did not issue the certificate below it');
    }
  }
  return { certificate: config.certificate, privateKey: config.privateKey, fullChain, root, notAfter: issuer.notAfter };
}

/** The issuer for an X.509 authority row and its private key. */
export function issuerFor(record: AuthorityRecord, privateKey: KeyObject): Issuer {
  if (!record.certificate) throw new Error(`authority ${record.id} has no certificate`);
  // upstreamChain ends at the root, which is in the bundle and not sent after the leaf.
  return prepareIssuer(record.certificate, privateKey, (record.upstreamChain ?? []).slice(0, -1));
}

export interface NewX509Params {
  trustDomain: string;
  keyPair: KeyPair;
  keyId: string;
  ttlSeconds: number;
  nowMs: number;
  upstream?: UpstreamCa;
}

export function newX509Authority(p: NewX509Params): { record: AuthorityRecord; issuer: Issuer } {
  const certificate = p.upstream
    ? createIntermediateCa({
        trustDomain: p.trustDomain,
        publicKey: p.keyPair.publicKey,
        upstreamCertificate: p.upstream.certificate,
        upstreamPrivateKey: p.upstream.privateKey,
        upstreamChain: p.upstream.fullChain.slice(1, -1),
        ttlSeconds: p.ttlSeconds,
        now: p.nowMs,
      })
    : createSelfSignedCa({ trustDomain: p.trustDomain, keyPair: p.keyPair, ttlSeconds: p.ttlSeconds, now: p.nowMs });
  const upstreamChain = p.upstream?.fullChain;
  const issuer = prepareIssuer(certificate, p.keyPair.privateKey, (upstreamChain ?? []).slice(0, -1));
  const record: AuthorityRecord = {
    id: issuer.skid.toString('hex'),
    kind: 'x509',
    status: 'prepared',
    notBefore: issuer.notBefore,
    notAfter: issuer.notAfter,
    certificate,
    keyId: p.keyId,
    createdAt: Math.floor(p.nowMs / 1000),
  };
  if (upstreamChain) record.upstreamChain = upstreamChain;
  return { record, issuer };
}

export interface NewJwtParams {
  keyPair: KeyPair;
  keyId: string;
  ttlSeconds: number;
  nowMs: number;
}

export async function newJwtAuthority(p: NewJwtParams): Promise<AuthorityRecord> {
  const nowSec = Math.floor(p.nowMs / 1000);
  const { kty, crv, x, y, n, e } = p.keyPair.publicKey.export({ format: 'jwk' });
  const publicKey = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
  return {
    id: await jwkThumbprintKid(p.keyPair.publicKey),
    kind: 'jwt',
    status: 'prepared',
    notBefore: nowSec,
    notAfter: nowSec + p.ttlSeconds,
    publicKey,
    keyId: p.keyId,
    createdAt: nowSec,
  };
}
