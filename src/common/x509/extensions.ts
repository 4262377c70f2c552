// Writers for the certificate extensions Emblem issues (RFC 5280 §4.2.1).
import {
  bitString,
  booleanValue,
  contextTag,
  octetString,
  oid,
  sequence,
  smallInteger,
  tlv,
  TAG,
} from './der.js';
import { KEY_USAGE_BITS, OID, type KeyUsageName } from './oids.js';

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
export function extension(type: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(type), booleanValue(true), octetString(value)) : sequence(oid(type), octetString(value));
}

/** [3] EXPLICIT Extensions, the last field of a TBSCertificate. */
export const extensionsField = (extensions: Buffer[]): Buffer => tlv(contextTag(3, true), sequence(...extensions));

export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const fields = ca ? [booleanValue(true)] : []; // DER omits the DEFAULT FALSE
  if (ca && pathLen !== undefined) fields.push(smallInteger(pathLen));
  return extension(OID.basicConstraints, true, sequence(...fields));
}

/** KeyUsage as a named-bit BIT STRING: trailing zero bits dropped (X.690 §11.2.2). */
export function keyUsage(usages: KeyUsageName[]): Buffer {
  let mask = 0;
  for (const u of usages) mask |= 1 << KEY_USAGE_BITS[u];
  const highest = 31 - Math.clz32(mask);
  const nBytes = (highest >> 3) + 1;
  const bytes = Buffer.alloc(nBytes);
  for (let bit = 0; bit <= highest; bit++) if (mask & (1 << bit)) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = 7 - (highest & 7);
  return extension(OID.keyUsage, true, bitString(bytes, unused));
}

export const extKeyUsageServerClient = (): Buffer =>
  extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth), oid(OID.clientAuth)));

const URI_TAG = contextTag(6, false);
const DNS_TAG = contextTag(2, false);

/** SubjectAltName with URI and DNS names; critical only when the subject is empty (RFC 5280 §4.2.1.6). */
export function subjectAltName(uris: readonly string[], dnsNames: readonly string[], critical: boolean): Buffer {
  const names: Buffer[] = [];
  for (const u of uris) names.push(tlv(URI_TAG, Buffer.from(u, 'latin1')));
  for (const d of dnsNames) names.push(tlv(DNS_TAG, Buffer.from(d, 'latin1')));
  return extension(OID.subjectAltName, critical, sequence(...names));
}

export const subjectKeyIdentifier = (keyId: Buffer): Buffer =>
  extension(OID.subjectKeyIdentifier, false, tlv(TAG.OCTET_STRING, keyId));

/** AuthorityKeyIdentifier with only keyIdentifier ([0] IMPLICIT OCTET STRING). */
export const authorityKeyIdentifier = (keyId: Buffer): Buffer =>
  extension(OID.authorityKeyIdentifier, false, sequence(tlv(contextTag(0, false), keyId)));
