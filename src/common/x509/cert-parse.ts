// Parses an X.509 certificate (RFC 5280 §4.1) with the bounds-checked DER reader into the fields
// Emblem needs: names as DER, validity, key, and the extensions it understands.
import { X509Certificate } from 'node:crypto';
import { EmblemError } from '../errors.js';
import {
  contextTag,
  DerCursor,
  malformed,
  rawOf,
  readBitString,
  readBoolean,
  readOid,
  readSmallInteger,
  readTime,
  readTlv,
  readTop,
  readUnsignedInteger,
  TAG,
  valueOf,
  type Tlv,
} from './der.js';
import { KEY_USAGE_BITS, OID, type KeyUsageName } from './oids.js';

export interface ParsedExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Buffer;
}

export interface GeneralNameConstraint {
  /** 'dns' and 'uri' are enforced; any other form is reported by its context tag number. */
  readonly type: 'dns' | 'uri' | `other:${number}`;
  readonly value: string;
}

export interface NameConstraints {
  readonly permitted: GeneralNameConstraint[];
  readonly excluded: GeneralNameConstraint[];
}

export interface ParsedCertificate {
  readonly der: Buffer;
  /** The TBSCertificate DER (what the signature covers). */
  readonly tbs: Buffer;
  /** 1, 2 or 3. */
  readonly version: number;
  /** Serial number as lowercase hex without leading zero bytes. */
  readonly serial: string;
  readonly signatureAlgorithm: string;
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  /** Unix seconds. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spkiDer: Buffer;
  readonly publicKeyBits: Buffer;
  readonly extensions: readonly ParsedExtension[];
  readonly basicConstraints?: { ca: boolean; pathLen?: number };
  /** Bit mask indexed by KEY_USAGE_BITS; undefined when the extension is absent. */
  readonly keyUsage?: number;
  readonly extKeyUsage?: string[];
  readonly uris: string[];
  readonly dnsNames: string[];
  /** Number of SAN entries that are neither URI nor DNS names. */
  readonly otherSans: number;
  readonly skid?: Buffer;
  readonly akid?: Buffer;
  readonly nameConstraints?: NameConstraints;
  /** Critical extensions this parser does not process (RFC 5280 §4.2: such a certificate must be rejected). */
  readonly unhandledCritical: string[];
}

export function hasKeyUsage(cert: ParsedCertificate, usage: KeyUsageName): boolean {
  return cert.keyUsage !== undefined && (cert.keyUsage & (1 << KEY_USAGE_BITS[usage])) !== 0;
}

const HANDLED = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.nameConstraints,
]);

interface Mutable {
  basicConstraints?: { ca: boolean; pathLen?: number };
  keyUsage?: number;
  extKeyUsage?: string[];
  uris: string[];
  dnsNames: string[];
  otherSans: number;
  skid?: Buffer;
  akid?: Buffer;
  nameConstraints?: NameConstraints;
}

/** Parses a DER certificate; throws EmblemError('invalid_argument') on anything malformed. */
export function parseCertificate(der: Buffer, what = 'certificate'): ParsedCertificate {
  const top = readTop(der, TAG.SEQUENCE, what);
  const outer = new DerCursor(der, top, what);
  const tbsTlv = outer.next(TAG.SEQUENCE, 'tbsCertificate');
  const outerAlg = outer.next(TAG.SEQUENCE, 'signatureAlgorithm');
  readBitString(der, outer.next(TAG.BIT_STRING, 'signatureValue'), `${what} signature`);
  outer.expectEnd();

  const t = new DerCursor(der, tbsTlv, `${what} tbsCertificate`);
  let version = 1;
  const versionTlv = t.optional(contextTag(0, true), 'version');
  if (versionTlv) {
    const v = new DerCursor(der, versionTlv, `${what} version`);
    version = readSmallInteger(der, v.next(TAG.INTEGER, 'version'), `${what} version`) + 1;
    v.expectEnd();
    if (version > 3) throw malformed(`${what}: unknown version ${version}`);
  }
  const serialBytes = readUnsignedInteger(der, t.next(TAG.INTEGER, 'serialNumber'), `${what} serialNumber`);
  const innerAlg = t.next(TAG.SEQUENCE, 'signature');
  if (!rawOf(der, innerAlg).equals(rawOf(der, outerAlg))) {
    throw malformed(`${what}: signature algorithm differs inside and outside the signed part`);
  }
  const signatureAlgorithm = readOid(der, readTlv(der, innerAlg.valueStart, innerAlg.end, `${what} signature`), `${what} signature`);
  const issuerTlv = t.next(TAG.SEQUENCE, 'issuer');
  const validity = new DerCursor(der, t.next(TAG.SEQUENCE, 'validity'), `${what} validity`);
  const notBefore = readTime(der, validity.next(undefined, 'notBefore'), `${what} notBefore`);
  const notAfter = readTime(der, validity.next(undefined, 'notAfter'), `${what} notAfter`);
  validity.expectEnd();
  const subjectTlv = t.next(TAG.SEQUENCE, 'subject');
  const spkiTlv = t.next(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const spki = new DerCursor(der, spkiTlv, `${what} subjectPublicKeyInfo`);
  spki.next(TAG.SEQUENCE, 'algorithm');
  const keyBits = readBitString(der, spki.next(TAG.BIT_STRING, 'subjectPublicKey'), `${what} subjectPublicKey`);
  spki.expectEnd();
  t.optional(contextTag(1, false), 'issuerUniqueID');
  t.optional(contextTag(2, false), 'subjectUniqueID');
  const extTlv = t.optional(contextTag(3, true), 'extensions');
  t.expectEnd();
  if (extTlv && version !== 3) throw malformed(`${what}: extensions in a version ${version} certificate`);

  const extensions = extTlv ? readExtensions(der, extTlv, what) : [];
  const fields: Mutable = { uris: [], dnsNames: [], otherSans: 0 };
  const unhandledCritical: string[] = [];
  for (const ext of extensions) {
    if (!HANDLED.has(ext.oid)) {
      if (ext.critical) unhandledCritical.push(ext.oid);
      continue;
    }
    decodeExtension(ext, fields, `${what} extension ${ext.oid}`);
  }

  return {
    der,
    tbs: rawOf(der, tbsTlv),
    version,
    serial: serialBytes.toString('hex'),
    signatureAlgorithm,
    issuerDer: rawOf(der, issuerTlv),
    subjectDer: rawOf(der, subjectTlv),
    notBefore,
    notAfter,
    spkiDer: rawOf(der, spkiTlv),
    publicKeyBits: keyBits.bytes,
    extensions,
    ...fields,
    unhandledCritical,
  };
}

function readExtensions(der: Buffer, extTlv: Tlv, what: string): ParsedExtension[] {
  const wrapper = new DerCursor(der, extTlv, `${what} extensions`);
  const list = new DerCursor(der, wrapper.next(TAG.SEQUENCE, 'Extensions'), `${what} extensions`);
  wrapper.expectEnd();
  const seen = new Set<string>();
  const out: ParsedExtension[] = [];
  for (const e of list.rest('Extension')) {
    if (e.tag !== TAG.SEQUENCE) throw malformed(`${what}: extension is not a SEQUENCE`);
    const c = new DerCursor(der, e, `${what} extension`);
    const type = readOid(der, c.next(TAG.OID, 'extnID'), `${what} extnID`);
    const critTlv = c.optional(TAG.BOOLEAN, 'critical');
    const critical = critTlv ? readBoolean(der, critTlv, `${what} critical`) : false;
    const value = valueOf(der, c.next(TAG.OCTET_STRING, 'extnValue'));
    c.expectEnd();
    if (seen.has(type)) throw malformed(`${what}: extension ${type} appears twice`);
    seen.add(type);
    out.push({ oid: type, critical, value });
  }
  if (out.length === 0) throw malformed(`${what}: empty extensions list`);
  return out;
}

function decodeExtension(ext: ParsedExtension, f: Mutable, what: string): void {
  const v = ext.value;
  switch (ext.oid) {
    case OID.basicConstraints: {
      const c = new DerCursor(v, readTop(v, TAG.SEQUENCE, what), what);
      const caTlv = c.optional(TAG.BOOLEAN, 'cA');
      const ca = caTlv ? readBoolean(v, caTlv, what) : false;
      const lenTlv = c.optional(TAG.INTEGER, 'pathLenConstraint');
      c.expectEnd();
      f.basicConstraints = lenTlv ? { ca, pathLen: readSmallInteger(v, lenTlv, what) } : { ca };
      return;
    }
    case OID.keyUsage: {
      const bits = readBitString(v, readTop(v, TAG.BIT_STRING, what), what);
      let mask = 0;
      for (let i = 0; i < Math.min(bits.bytes.length, 2); i++) {
        for (let b = 0; b < 8; b++) if (bits.bytes[i]! & (0x80 >> b)) mask |= 1 << (i * 8 + b);
      }
      f.keyUsage = mask;
      return;
    }
    case OID.extKeyUsage: {
      const c = new DerCursor(v, readTop(v, TAG.SEQUENCE, what), what);
      f.extKeyUsage = c.rest('KeyPurposeId').map((p) => readOid(v, p, what));
      return;
    }
    case OID.subjectAltName: {
      const c = new DerCursor(v, readTop(v, TAG.SEQUENCE, what), what);
      if (c.done) throw malformed(`${what}: empty subjectAltName`);
      for (const name of c.rest('GeneralName')) {
        if (name.tag === contextTag(6, false)) f.uris.push(readIa5(v, name, what));
        else if (name.tag === contextTag(2, false)) f.dnsNames.push(readIa5(v, name, what));
        else f.otherSans++;
      }
      return;
    }
    case OID.subjectKeyIdentifier:
      f.skid = valueOf(v, readTop(v, TAG.OCTET_STRING, what));
      return;
    case OID.authorityKeyIdentifier: {
      const c = new DerCursor(v, readTop(v, TAG.SEQUENCE, what), what);
      const keyId = c.optional(contextTag(0, false), 'keyIdentifier');
      c.optional(contextTag(1, true), 'authorityCertIssuer');
      c.optional(contextTag(2, false), 'authorityCertSerialNumber');
      c.expectEnd();
      if (keyId) f.akid = valueOf(v, keyId);
      return;
    }
    case OID.nameConstraints: {
      const c = new DerCursor(v, readTop(v, TAG.SEQUENCE, what), what);
      const permitted = c.optional(contextTag(0, true), 'permittedSubtrees');
      const excluded = c.optional(contextTag(1, true), 'excludedSubtrees');
      c.expectEnd();
      if (!permitted && !excluded) throw malformed(`${what}: name constraints with no subtrees`);
      f.nameConstraints = {
        permitted: permitted ? readSubtrees(v, permitted, what) : [],
        excluded: excluded ? readSubtrees(v, excluded, what) : [],
      };
      return;
    }
  }
}

function readIa5(buf: Buffer, t: Tlv, what: string): string {
  for (let i = t.valueStart; i < t.end; i++) if (buf[i]! > 0x7f) throw malformed(`${what}: non-ASCII IA5String`);
  return buf.toString('latin1', t.valueStart, t.end);
}

function readSubtrees(buf: Buffer, t: Tlv, what: string): GeneralNameConstraint[] {
  const out: GeneralNameConstraint[] = [];
  for (const subtree of new DerCursor(buf, t, what).rest('GeneralSubtree')) {
    if (subtree.tag !== TAG.SEQUENCE) throw malformed(`${what}: GeneralSubtree is not a SEQUENCE`);
    const c = new DerCursor(buf, subtree, what);
    const base = c.next(undefined, 'base');
    const min = c.optional(contextTag(0, false), 'minimum');
    if (min && readSmallInteger(buf, { ...min, tag: TAG.INTEGER }, what) !== 0) {
      throw new EmblemError('invalid_argument', `${what}: name constraint minimum must be 0`);
    }
    if (c.optional(contextTag(1, false), 'maximum')) {
      throw new EmblemError('invalid_argument', `${what}: name constraint maximum must be absent`);
    }
    c.expectEnd();
    if (base.tag === contextTag(2, false)) out.push({ type: 'dns', value: readIa5(buf, base, what) });
    else if (base.tag === contextTag(6, false)) out.push({ type: 'uri', value: readIa5(buf, base, what) });
    else out.push({ type: `other:${base.tag & 0x1f}`, value: '' });
  }
  return out;
}

/** Node's (OpenSSL's) view of a certificate; parse failures become EmblemError('invalid_argument'). */
export function openX509(der: Buffer, what = 'certificate'): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw new EmblemError('invalid_argument', `${what}: OpenSSL cannot parse it`, { cause: err });
  }
}
