// Shared helpers for the X.509 tests: CAs made with our code, deliberately odd certificates made
// with @peculiar/x509 (an independent encoder), and the openssl command line.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as px from '@peculiar/x509';
import { createIntermediateCa, createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { prepareIssuer, type Issuer } from '../../../src/common/x509/issuer.js';
import { exportPkcs8Der, exportSpkiDer, generateKeyPair, type KeyPair } from '../../../src/common/x509/keys.js';

type PxCrypto = Parameters<typeof px.cryptoProvider.set>[0];
type WebCryptoKey = webcrypto.CryptoKey;

px.cryptoProvider.set(webcrypto as unknown as PxCrypto);

export const HOUR = 3600;

export interface TestCa {
  der: Buffer;
  keys: KeyPair;
  issuer: Issuer;
}

export function makeRoot(trustDomain = 'example.org', keys: KeyPair = generateKeyPair(), ttlSeconds = 24 * HOUR, now?: number): TestCa {
  const der = createSelfSignedCa({ trustDomain, keyPair: keys, ttlSeconds, now });
  return { der, keys, issuer: prepareIssuer(der, keys.privateKey) };
}

export function makeIntermediate(parent: TestCa, trustDomain = 'example.org', ttlSeconds = 12 * HOUR, now?: number): TestCa {
  const keys = generateKeyPair();
  const der = createIntermediateCa({
    trustDomain,
    publicKey: keys.publicKey,
    upstreamCertificate: parent.der,
    upstreamPrivateKey: parent.keys.privateKey,
    ttlSeconds,
    now,
  });
  const above = parent.issuer.selfSigned ? [] : parent.issuer.intermediates.slice();
  return { der, keys, issuer: prepareIssuer(der, keys.privateKey, above) };
}

const rsaCache = new Map<number, KeyPair>();
/** RSA keys are slow to generate, so tests share one per size. */
export function rsaKeyPair(bits = 2048): KeyPair {
  let kp = rsaCache.get(bits);
  if (!kp) {
    kp = generateKeyPairSync('rsa', { modulusLength: bits });
    rsaCache.set(bits, kp);
  }
  return kp;
}
export const p384KeyPair = (): KeyPair => generateKeyPairSync('ec', { namedCurve: 'P-384' });
export const ed25519KeyPair = (): KeyPair => generateKeyPairSync('ed25519');

export const toPem = (der: Buffer): string => new X509Certificate(der).toString();

/** A temporary directory removed by the returned cleanup function. */
export function tempDir(): { dir: string; file: (name: string, data: string | Buffer) => string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'emblem-x509-'));
  return {
    dir,
    file: (name, data) => {
      const p = path.join(dir, name);
      writeFileSync(p, data);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs the openssl CLI; returns stdout, or throws with stderr on a non-zero exit. */
export function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function opensslBuffer(args: string[]): Buffer {
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function cryptoKeys(keys: KeyPair): Promise<{ privateKey: WebCryptoKey; publicKey: WebCryptoKey }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', exportPkcs8Der(keys.privateKey), alg, true, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', exportSpkiDer(keys.publicKey), alg, true, ['verify']),
  };
}

export interface OddCertOptions {
  /** The signer; its subject becomes the issuer. Omit for self-signed with `subjectKeys`. */
  issuer?: Pick<TestCa, 'der' | 'keys'>;
  subjectKeys?: KeyPair;
  subject?: string;
  uris?: string[];
  dnsNames?: string[];
  ca?: boolean;
  pathLength?: number;
  /** px.KeyUsageFlags bits; undefined means no keyUsage extension. */
  keyUsage?: number | undefined;
  omitKeyUsage?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  extraExtensions?: px.Extension[];
}

/**
 * A certificate built with @peculiar/x509, for cases our own minting refuses to produce. EC P-256
 * only. Defaults: a valid leaf for spiffe://example.org/ns/odd, valid for an hour around now.
 */
export async function oddCert(o: OddCertOptions = {}): Promise<{ der: Buffer; keys: KeyPair }> {
  const keys = o.subjectKeys ?? generateKeyPair();
  const subjectCk = await cryptoKeys(keys);
  const signer = o.issuer ? await cryptoKeys(o.issuer.keys) : subjectCk;
  const subject = o.subject ?? 'C=US, O=Odd';
  const issuerName = o.issuer ? new px.X509Certificate(o.issuer.der).subjectName : subject;
  const ca = o.ca ?? false;
  const usages = o.keyUsage ?? (ca ? px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign : px.KeyUsageFlags.digitalSignature);
  const extensions: px.Extension[] = [new px.BasicConstraintsExtension(ca, o.pathLength, true)];
  if (!o.omitKeyUsage) extensions.push(new px.KeyUsagesExtension(usages, true));
  const names: { type: 'url' | 'dns'; value: string }[] = (o.uris ?? ['spiffe://example.org/ns/odd']).map((value) => ({ type: 'url', value }));
  for (const value of o.dnsNames ?? []) names.push({ type: 'dns', value });
  if (names.length > 0) extensions.push(new px.SubjectAlternativeNameExtension(names));
  extensions.push(await px.SubjectKeyIdentifierExtension.create(subjectCk.publicKey));
  if (o.issuer) extensions.push(await px.AuthorityKeyIdentifierExtension.create(signer.publicKey));
  extensions.push(...(o.extraExtensions ?? []));
  const now = Date.now();
  const cert = await px.X509CertificateGenerator.create({
    serialNumber: '01' + randomBytes(15).toString('hex'),
    subject,
    issuer: issuerName,
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + HOUR * 1000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    publicKey: subjectCk.publicKey,
    signingKey: signer.privateKey,
    extensions,
  });
  return { der: Buffer.from(cert.rawData), keys };
}

/** A self-signed P-256 certificate `CN=<cn>` made with @peculiar/x509 alone (no SPIFFE ID), as DER. */
export async function makeCaDer(cn: string): Promise<Buffer> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await px.X509CertificateGenerator.createSelfSigned({ serialNumber: '01', name: `CN=${cn}`, keys, signingAlgorithm: alg });
  return Buffer.from(cert.rawData);
}

/** Byte-flips a copy of `der` at `offset` (negative counts from the end). */
export function flipByte(der: Buffer, offset: number): Buffer {
  const copy = Buffer.from(der);
  const i = offset < 0 ? copy.length + offset : offset;
  copy[i]! ^= 0x01;
  return copy;
}
