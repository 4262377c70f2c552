// Distinguished names for the certificates Emblem issues (RFC 5280 §4.1.2.4 / §4.1.2.6).
import { EmblemError } from '../errors.js';
import { oid, printableString, sequence, setOf, utf8String } from './der.js';
import { OID } from './oids.js';

export interface NameAttributes {
  /** Two-letter country code, PrintableString. */
  country?: string;
  organization?: string;
  commonName?: string;
  /** X.520 serialNumber attribute; Emblem puts the CA certificate's serial here to make CA subjects unique. */
  serialNumber?: string;
}

/** X.520 upper bounds (RFC 5280 Appendix A.1). */
export const MAX_COMMON_NAME = 64;
const MAX_ORGANIZATION = 64;
const MAX_SERIAL_NUMBER = 64;

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

const attribute = (type: string, value: Buffer): Buffer => setOf(sequence(oid(type), value));

function checkLength(label: string, value: string, max: number): void {
  if (value.length === 0 || value.length > max) {
    throw new EmblemError('invalid_argument', `${label} must be 1-${max} characters`);
  }
}

/** Encodes a Name with the attributes in the order C, O, CN, serialNumber (one attribute per RDN). */
export function encodeName(attrs: NameAttributes): Buffer {
  const rdns: Buffer[] = [];
  if (attrs.country !== undefined) {
    if (!/^[A-Z]{2}$/.test(attrs.country)) throw new EmblemError('invalid_argument', 'country must be two capital letters');
    rdns.push(attribute(OID.countryName, printableString(attrs.country)));
  }
  if (attrs.organization !== undefined) {
    checkLength('organization', attrs.organization, MAX_ORGANIZATION);
    rdns.push(attribute(OID.organizationName, utf8String(attrs.organization)));
  }
  if (attrs.commonName !== undefined) {
    checkLength('common name', attrs.commonName, MAX_COMMON_NAME);
    rdns.push(attribute(OID.commonName, utf8String(attrs.commonName)));
  }
  if (attrs.serialNumber !== undefined) {
    checkLength('serialNumber', attrs.serialNumber, MAX_SERIAL_NUMBER);
    if (!PRINTABLE.test(attrs.serialNumber)) throw new EmblemError('invalid_argument', 'serialNumber must be a PrintableString');
    rdns.push(attribute(OID.serialNumber, printableString(attrs.serialNumber)));
  }
  return sequence(...rdns);
}
