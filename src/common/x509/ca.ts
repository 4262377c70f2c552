// Signing (CA) certificates (X509-SVID §3.2, §4): self-signed roots and intermediates signed by an
// upstream CA. Each CA is itself an SVID for its trust domain ID (URI SAN spiffe://<td>, no path).
import { KeyObject } from 'node:crypto';
import { EmblemError } from '../errors.js';
import { parseTrustDomain, trustDomainId } from '../spiffe-id.js';
import { signingAlgorithmFor } from './algorithms.js';
import { randomSerial, signCertificate } from './certificate.js';
import { basicConstraints, keyUsage, subjectAltName, subjectKeyIdentifier } from './extensions.js';
import { prepareIssuer } from './issuer.js';
import { exportSpkiDer, keyKindOf } from './keys.js';
import { encodeName } from './names.js';
import { keyIdentifier, parseSpki } from './spki.js';
import { BACKDATE_SECONDS } from './leaf.js';

export interface CaSubject {
  commonName?: string;
  organization?: string;
  country?: string;
}

export interface SelfSignedCaParams {
  trustDomain: string;
  keyPair: { privateKey: KeyObject; publicKey: KeyObject };
  ttlSeconds: number;
  /** Milliseconds since the epoch; defaults to Date.now(). */
  now?: number;
  subject?: CaSubject;
}

export interface IntermediateCaParams {
  trustDomain: string;
  /** The intermediate's public key, or its SPKI DER. */
  publicKey: KeyObject | Buffer;
  upstreamCertificate: Buffer;
  upstreamPrivateKey: KeyObject;
  ttlSeconds: number;
  now?: number;
  subject?: CaSubject;
  /** Certificates above the upstream (nearest first, root excluded), to check the upstream chains. */
  upstreamChain?: Buffer[];
}

const DEFAULT_CA_SUBJECT: Required<Pick<CaSubject, 'country' | 'organization'>> = { country: 'US', organization: 'Emblem' };

function checkTtl(ttl: number): void {
  if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new EmblemError('invalid_argument', `ttlSeconds must be a positive integer, got ${ttl}`);
}

/**
 * CA subject: C, O, optional CN, and serialNumber = this certificate's serial in decimal (as SPIRE
 * does), so no two CAs share a subject and no leaf subject can equal its issuer's.
 */
function caSubjectName(subject: CaSubject | undefined, serial: Buffer): Buffer {
  return encodeName({
    country: subject?.country ?? DEFAULT_CA_SUBJECT.country,
    organization: subject?.organization ?? DEFAULT_CA_SUBJECT.organization,
    commonName: subject?.commonName,
    serialNumber: BigInt('0x' + serial.toString('hex')).toString(10),
  });
}

function caExtensions(trustDomain: string, publicKeyBits: Buffer): Buffer[] {
  return [
    basicConstraints(true),
    keyUsage(['keyCertSign', 'cRLSign']),
    subjectKeyIdentifier(keyIdentifier(publicKeyBits)),
    subjectAltName([trustDomainId(trustDomain)], [], false),
  ];
}

/** A self-signed root CA for a trust domain; returns its DER. */
export function createSelfSignedCa(params: SelfSignedCaParams): Buffer {
  const trustDomain = parseTrustDomain(params.trustDomain);
  checkTtl(params.ttlSeconds);
  const { privateKey, publicKey } = params.keyPair;
  if (privateKey.type !== 'private') throw new EmblemError('invalid_argument', 'keyPair.privateKey is not a private key');
  const algorithm = signingAlgorithmFor(keyKindOf(privateKey));
  const spkiDer = exportSpkiDer(publicKey);
  if (!spkiDer.equals(exportSpkiDer(privateKey))) throw new EmblemError('invalid_argument', 'keyPair.publicKey does not match keyPair.privateKey');
  const spki = parseSpki(spkiDer, 'CA public key');
  const nowSeconds = Math.floor((params.now ?? Date.now()) / 1000);
  const serial = randomSerial();
  const name = caSubjectName(params.subject, serial);
  return signCertificate(
    {
      serial,
      algorithm,
      issuerName: name,
      notBefore: nowSeconds - BACKDATE_SECONDS,
      notAfter: nowSeconds + params.ttlSeconds,
      subjectName: name,
      spkiDer,
      extensions: caExtensions(trustDomain, spki.publicKeyBits),
    },
    privateKey,
  );
}

/** An intermediate CA signed by an upstream CA; its notAfter never passes the upstream's. */
export function createIntermediateCa(params: IntermediateCaParams): Buffer {
  const trustDomain = parseTrustDomain(params.trustDomain);
  checkTtl(params.ttlSeconds);
  const upstream = prepareIssuer(params.upstreamCertificate, params.upstreamPrivateKey, params.upstreamChain ?? []);
  const spkiDer = params.publicKey instanceof KeyObject ? exportSpkiDer(params.publicKey) : params.publicKey;
  const spki = parseSpki(spkiDer, 'intermediate CA public key');
  const nowSeconds = Math.floor((params.now ?? Date.now()) / 1000);
  if (nowSeconds >= upstream.notAfter) throw new EmblemError('failed_precondition', 'the upstream CA has expired');
  const serial = randomSerial();
  return signCertificate(
    {
      serial,
      algorithm: upstream.algorithm,
      issuerName: upstream.subjectDer,
      notBefore: nowSeconds - BACKDATE_SECONDS,
      notAfter: Math.min(nowSeconds + params.ttlSeconds, upstream.notAfter),
      subjectName: caSubjectName(params.subject, serial),
      spkiDer,
      extensions: [...caExtensions(trustDomain, spki.publicKeyBits), upstream.authorityKeyIdExtension],
    },
    params.upstreamPrivateKey,
  );
}
