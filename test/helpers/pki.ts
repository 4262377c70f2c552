// Test PKI for the end-to-end server tests:
// - x509pop node certificates (CAs, CA-signed leaves, self-signed leaves, expired ones), made with
//   @peculiar/x509 so they come from an encoder independent of the server's own;
// - SPIFFE identities of a foreign trust domain (a root plus an X509-SVID), made with our own CA
//   code, to knock on the server with a certificate it must not accept.
import { createHash, KeyObject, webcrypto } from 'node:crypto';
import * as px from '@peculiar/x509';
import { createSelfSignedCa } from '../../src/common/x509/ca.js';
import { prepareIssuer } from '../../src/common/x509/issuer.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { mintX509Svid } from '../../src/common/x509/leaf.js';

px.cryptoProvider.set(webcrypto as unknown as Parameters<typeof px.cryptoProvider.set>[0]);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface PopCa {
  der: Buffer;
  pem: string;
  keys: webcrypto.CryptoKeyPair;
  name: string;
}

export interface PopLeaf {
  /** DER of the leaf certificate. */
  der: Buffer;
  /** Chain to present (leaf first, plus any intermediates). */
  chain: Buffer[];
  privateKey: KeyObject;
  commonName: string;
  /** Lowercase hex serial without leading zeros, as the server's selector writes it. */
  serial: string;
  sha1: string;
  sha256: string;
}

export const sha1Hex = (der: Buffer): string => createHash('sha1').update(der).digest('hex');
export const sha256Hex = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

let serialCounter = 0;
/** A positive serial with a nonzero first nibble, so its normalised form is easy to predict. */
function nextSerial(): string {
  serialCounter += 1;
  return `5a${Date.now().toString(16)}${serialCounter.toString(16).padStart(4, '0')}`;
}

const newKeys = async (): Promise<webcrypto.CryptoKeyPair> => (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;

interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

/** A CA certificate for x509pop (an operator's node CA). */
export async function createPopCa(name: string, validity: Validity = {}): Promise<PopCa> {
  const keys = await newKeys();
  const cert = await px.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: `CN=${name}`,
    notBefore: validity.notBefore ?? new Date(Date.now() - DAY_MS),
    notAfter: validity.notAfter ?? new Date(Date.now() + 30 * DAY_MS),
    keys,
    signingAlgorithm: EC,
    extensions: [
      new px.BasicConstraintsExtension(true, undefined, true),
      new px.KeyUsagesExtension(px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { der: Buffer.from(cert.rawData), pem: cert.toString('pem'), keys, name };
}

/** An intermediate CA signed by `parent`. */
export async function createPopIntermediate(parent: PopCa, name: string): Promise<PopCa> {
  const keys = await newKeys();
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: `CN=${name}`,
    issuer: `CN=${parent.name}`,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + 14 * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: parent.keys.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new px.BasicConstraintsExtension(true, 0, true),
      new px.KeyUsagesExtension(px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { der: Buffer.from(cert.rawData), pem: cert.toString('pem'), keys, name };
}

async function leafFrom(cert: px.X509Certificate, keys: webcrypto.CryptoKeyPair, commonName: string, serial: string, intermediates: Buffer[]): Promise<PopLeaf> {
  const der = Buffer.from(cert.rawData);
  return {
    der,
    chain: [der, ...intermediates],
    privateKey: KeyObject.from(keys.privateKey),
    commonName,
    serial: serial.replace(/^0+(?=.)/, '').toLowerCase(),
    sha1: sha1Hex(der),
    sha256: sha256Hex(der),
  };
}

const leafExtensions = () => [
  new px.BasicConstraintsExtension(false, undefined, true),
  new px.KeyUsagesExtension(px.KeyUsageFlags.digitalSignature, true),
];

/** A node certificate signed by `ca`; `intermediates` (nearest first) are appended to its chain. */
export async function createPopLeaf(ca: PopCa, commonName: string, validity: Validity = {}, intermediates: Buffer[] = []): Promise<PopLeaf> {
  const keys = await newKeys();
  const serial = nextSerial();
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${commonName}`,
    issuer: `CN=${ca.name}`,
    notBefore: validity.notBefore ?? new Date(Date.now() - DAY_MS),
    notAfter: validity.notAfter ?? new Date(Date.now() + 7 * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: EC,
    extensions: leafExtensions(),
  });
  return leafFrom(cert, keys, commonName, serial, intermediates);
}

/** A self-signed node certificate (the pinned model). */
export async function createSelfSignedPopLeaf(commonName: string, validity: Validity = {}): Promise<PopLeaf> {
  const keys = await newKeys();
  const serial = nextSerial();
  const cert = await px.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=${commonName}`,
    notBefore: validity.notBefore ?? new Date(Date.now() - DAY_MS),
    notAfter: validity.notAfter ?? new Date(Date.now() + 7 * DAY_MS),
    keys,
    signingAlgorithm: EC,
    extensions: leafExtensions(),
  });
  return leafFrom(cert, keys, commonName, serial, []);
}

/** An X509-SVID of another trust domain, with the root that issued it. */
export function foreignSvid(trustDomain: string, path = '/emblem/agent/join_token/0123456789abcdef0123456789abcdef') {
  const caKeys = generateKeyPair();
  const root = createSelfSignedCa({ trustDomain, keyPair: caKeys, ttlSeconds: 3600 });
  const issuer = prepareIssuer(root, caKeys.privateKey);
  const keys = generateKeyPair();
  const svid = mintX509Svid(issuer, { spiffeId: `spiffe://${trustDomain}${path}`, publicKey: keys.publicKey, ttlSeconds: 600 });
  return { root, chain: [svid.der], privateKey: keys.privateKey };
}

/** A PKCS#10 request (made by @peculiar/x509) that asks for a subject, URI and DNS SANs of its own. */
export async function csrAskingFor(uri: string, dnsNames: string[]): Promise<{ der: Buffer; publicKey: KeyObject }> {
  const keys = await newKeys();
  const csr = await px.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${dnsNames[0] ?? 'requested'}`,
    keys,
    signingAlgorithm: EC,
    extensions: [new px.SubjectAlternativeNameExtension([{ type: 'url', value: uri }, ...dnsNames.map((value) => ({ type: 'dns' as const, value }))])],
  });
  return { der: Buffer.from(csr.rawData), publicKey: KeyObject.from(keys.publicKey) };
}
