// PEM (RFC 7468) and concatenated-DER helpers for certificates and private keys.
// Error messages never contain key material, only block numbers and labels.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { errorMessage, invalidArgument } from './errors.js';
import { readTlv, TAG } from './x509/der.js';
import { splitDerCertificates } from './x509/chain.js';

export interface PemBlock {
  label: string;
  der: Buffer;
}

const BEGIN_RE = /-----BEGIN ([A-Z0-9 ]+)-----/g;
const BASE64_BODY_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** One PEM block: `-----BEGIN <label>-----`, base64 wrapped at 64 columns, `-----END <label>-----`. */
export function encodePem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function certificatesToPem(ders: readonly Buffer[]): string {
  return ders.map((der) => encodePem('CERTIFICATE', der)).join('');
}

/**
 * All PEM blocks of a text, in order. Text outside blocks is ignored (RFC 7468 §2 allows it); a
 * block without its END line or with a body that is not base64 is an error.
 */
export function parsePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  BEGIN_RE.lastIndex = 0;
  for (let m = BEGIN_RE.exec(text); m !== null; m = BEGIN_RE.exec(text)) {
    const label = m[1] as string;
    const endLine = `-----END ${label}-----`;
    const bodyStart = m.index + m[0].length;
    const end = text.indexOf(endLine, bodyStart);
    const n = blocks.length + 1;
    if (end < 0) throw invalidArgument(`PEM block ${n} (${label}) has no "${endLine}" line`);
    const body = text.slice(bodyStart, end).replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !BASE64_BODY_RE.test(body)) {
      throw invalidArgument(`PEM block ${n} (${label}) is not valid base64`);
    }
    blocks.push({ label, der: Buffer.from(body, 'base64') });
    BEGIN_RE.lastIndex = end + endLine.length;
  }
  return blocks;
}

/** Checks that `der` is exactly one parseable X.509 certificate; `what` names it in errors. */
export function checkCertificateDer(der: Buffer, what: string): Buffer {
  let tlv;
  try {
    tlv = readTlv(der, 0, der.length, what);
  } catch (err) {
    throw invalidArgument(`${what} is not DER (${errorMessage(err)})`);
  }
  if (tlv.tag !== TAG.SEQUENCE) throw invalidArgument(`${what} is not DER (not a SEQUENCE)`);
  if (tlv.end !== der.length) throw invalidArgument(`${what} has ${der.length - tlv.end} trailing bytes after the certificate`);
  try {
    // Node decodes the public key lazily: read it now, or a certificate whose key does not decode
    // is accepted here and fails later wherever the key is first used (serving a stored bundle).
    void new X509Certificate(der).publicKey;
  } catch (err) {
    throw invalidArgument(`${what} is not a valid X.509 certificate`, err);
  }
  return der;
}

/** Splits concatenated DER certificates (the Workload API form) and checks that each parses. */
export function splitAndCheckDerCertificates(buf: Buffer): Buffer[] {
  return splitDerCertificates(buf).map((der, i) => checkCertificateDer(der, `DER certificate ${i + 1}`));
}

/** The CERTIFICATE blocks of a PEM text (other blocks are skipped), each checked. */
export function parsePemCertificates(text: string): Buffer[] {
  const blocks = parsePemBlocks(text);
  if (blocks.length === 0) throw invalidArgument('input is not PEM: no "-----BEGIN" line found');
  const certs: Buffer[] = [];
  blocks.forEach((b, i) => {
    if (b.label === 'CERTIFICATE') certs.push(checkCertificateDer(b.der, `PEM block ${i + 1} (CERTIFICATE)`));
  });
  if (certs.length === 0) throw invalidArgument('no CERTIFICATE block found in PEM input');
  return certs;
}

/** Certificates from PEM text or concatenated DER (detected by the leading byte 0x30). */
export function parseCertificatesFlexible(input: Buffer | string): Buffer[] {
  if (typeof input !== 'string' && input.length > 0 && input[0] === 0x30) return splitAndCheckDerCertificates(input);
  const text = typeof input === 'string' ? input : input.toString('utf8');
  if (text.trim().length === 0) throw invalidArgument('no certificate found: input is empty');
  return parsePemCertificates(text);
}

const PRIVATE_KEY_TYPES: Record<string, 'pkcs8' | 'sec1' | 'pkcs1'> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};

/** The one private key of a PEM text (PKCS#8, SEC1 or PKCS#1, unencrypted). */
export function parsePemPrivateKey(text: string): KeyObject {
  const blocks = parsePemBlocks(text);
  if (blocks.length === 0) throw invalidArgument('input is not PEM: no "-----BEGIN" line found');
  if (blocks.some((b) => b.label === 'ENCRYPTED PRIVATE KEY')) {
    throw invalidArgument('encrypted private keys are not supported');
  }
  const keys = blocks.filter((b) => b.label in PRIVATE_KEY_TYPES);
  if (keys.length === 0) throw invalidArgument('no PRIVATE KEY block found in PEM input');
  if (keys.length > 1) throw invalidArgument(`PEM input has ${keys.length} private keys; expected one`);
  const block = keys[0] as PemBlock;
  try {
    return createPrivateKey({ key: block.der, format: 'der', type: PRIVATE_KEY_TYPES[block.label] as 'pkcs8' });
  } catch {
    // The cause is dropped on purpose: it could echo key bytes.
    throw invalidArgument(`PEM ${block.label} block is not a valid private key`);
  }
}

/** PKCS#8 PEM of a private key. */
export function privateKeyToPem(key: KeyObject): string {
  if (key.type !== 'private') throw invalidArgument(`expected a private key, got a ${key.type} key`);
  return key.export({ format: 'pem', type: 'pkcs8' }) as string;
}
