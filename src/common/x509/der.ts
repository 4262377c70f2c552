// A minimal DER (X.690) writer and a bounds-checked reader, enough for X.509 certificates and
// PKCS#10 requests. The reader parses untrusted input: every length is checked against its
// enclosing value and anything that is not strict DER is rejected with EmblemError('invalid_argument').
import { EmblemError } from '../errors.js';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Tag byte of a context-specific [n] value; constructed for EXPLICIT tagging and SEQUENCE-like contents. */
export const contextTag = (n: number, constructed: boolean): number => (constructed ? 0xa0 : 0x80) | n;

export function malformed(what: string): EmblemError {
  return new EmblemError('invalid_argument', `malformed DER: ${what}`);
}

// ---------------------------------------------------------------------------------------------
// Writer

function headerLength(len: number): number {
  if (len < 0x80) return 2;
  if (len < 0x100) return 3;
  if (len < 0x10000) return 4;
  if (len < 0x1000000) return 5;
  return 6;
}

function writeHeader(out: Buffer, tag: number, len: number): number {
  out[0] = tag;
  if (len < 0x80) {
    out[1] = len;
    return 2;
  }
  const n = headerLength(len) - 2;
  out[1] = 0x80 | n;
  for (let i = 0; i < n; i++) out[2 + i] = (len >>> (8 * (n - 1 - i))) & 0xff;
  return 2 + n;
}

/** One TLV whose value is the concatenation of `parts`. */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(headerLength(len) + len);
  let off = writeHeader(out, tag, len);
  for (const p of parts) off += p.copy(out, off);
  return out;
}

export const sequence = (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...items);

/** SET OF in DER order (elements sorted by their encodings, X.690 §11.6). */
export const setOf = (...items: Buffer[]): Buffer => tlv(TAG.SET, ...[...items].sort(Buffer.compare));

export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0]);

export const booleanValue = (v: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 1, v ? 0xff : 0]);

export const octetString = (bytes: Buffer): Buffer => tlv(TAG.OCTET_STRING, bytes);

export const bitString = (bytes: Buffer, unusedBits = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), bytes);

export const utf8String = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));

export const printableString = (s: string): Buffer => tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'latin1'));

/** INTEGER from the big-endian bytes of a non-negative number (leading zeros trimmed, 0x00 added if needed). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  if (trimmed.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  return trimmed[0]! & 0x80 ? tlv(TAG.INTEGER, Buffer.from([0]), trimmed) : tlv(TAG.INTEGER, trimmed);
}

export function smallInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`smallInteger: ${n} is not a non-negative safe integer`);
  const hex = n.toString(16);
  return unsignedInteger(Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex'));
}

/** OBJECT IDENTIFIER from dotted form, e.g. "2.5.29.17". */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0) || arcs[0]! > 2) {
    throw new RangeError(`oid: invalid OID ${dotted}`);
  }
  const bytes: number[] = [];
  const pushArc = (arc: number): void => {
    const chunk: number[] = [arc % 128];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v % 128) | 0x80);
    bytes.push(...chunk);
  };
  pushArc(arcs[0]! * 40 + arcs[1]!);
  for (const arc of arcs.slice(2)) pushArc(arc);
  return tlv(TAG.OID, Buffer.from(bytes));
}

/** Last second representable as UTCTime per RFC 5280 §4.1.2.5 (2049-12-31T23:59:59Z). */
const UTC_TIME_LIMIT = Date.UTC(2050, 0, 1) / 1000;

const pad2 = (n: number): string => (n < 10 ? '0' + n : String(n));

/** Validity time per RFC 5280: UTCTime through 2049, GeneralizedTime from 2050; always Zulu, whole seconds. */
export function time(unixSeconds: number): Buffer {
  const d = new Date(unixSeconds * 1000);
  const year = d.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`time: year ${year} cannot be encoded`);
  const rest =
    pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) + pad2(d.getUTCHours()) + pad2(d.getUTCMinutes()) + pad2(d.getUTCSeconds()) + 'Z';
  if (unixSeconds < UTC_TIME_LIMIT) return tlv(TAG.UTC_TIME, Buffer.from(pad2(year % 100) + rest, 'latin1'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(String(year) + rest, 'latin1'));
}

// ---------------------------------------------------------------------------------------------
// Reader

/** A decoded TLV: positions are offsets into the buffer it was read from. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first value byte. */
  readonly valueStart: number;
  /** Offset just past the value. */
  readonly end: number;
}

/** Reads one TLV at `offset`, which must end at or before `limit`. */
export function readTlv(buf: Buffer, offset: number, limit: number, what: string): Tlv {
  if (limit > buf.length) limit = buf.length;
  if (offset + 2 > limit) throw malformed(`${what}: truncated header`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw malformed(`${what}: high tag numbers are not supported`);
  const first = buf[offset + 1]!;
  let len: number;
  let valueStart: number;
  if (first < 0x80) {
    len = first;
    valueStart = offset + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw malformed(`${what}: indefinite length is not DER`);
    if (n > 4) throw malformed(`${what}: length too large`);
    if (offset + 2 + n > limit) throw malformed(`${what}: truncated length`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    if (buf[offset + 2]! === 0 || len < 0x80) throw malformed(`${what}: length is not minimally encoded`);
    valueStart = offset + 2 + n;
  }
  const end = valueStart + len;
  if (end > limit) throw malformed(`${what}: value runs past its container`);
  return { tag, start: offset, valueStart, end };
}

/** Reads a whole buffer as exactly one TLV with the expected tag (no trailing bytes). */
export function readTop(buf: Buffer, tag: number, what: string): Tlv {
  const t = readTlv(buf, 0, buf.length, what);
  if (t.tag !== tag) throw malformed(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  if (t.end !== buf.length) throw malformed(`${what}: ${buf.length - t.end} trailing bytes`);
  return t;
}

/** Walks the children of a constructed value in order. */
export class DerCursor {
  private pos: number;
  private readonly end: number;

  constructor(
    readonly buf: Buffer,
    parent: Tlv,
    private readonly what: string,
  ) {
    this.pos = parent.valueStart;
    this.end = parent.end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  peekTag(): number | undefined {
    return this.pos < this.end ? this.buf[this.pos] : undefined;
  }

  /** The next child, which must be present and (if given) have the tag. */
  next(tag: number | undefined, name: string): Tlv {
    if (this.pos >= this.end) throw malformed(`${this.what}: missing ${name}`);
    const t = readTlv(this.buf, this.pos, this.end, `${this.what} ${name}`);
    if (tag !== undefined && t.tag !== tag) {
      throw malformed(`${this.what}: ${name} has tag 0x${t.tag.toString(16)}, expected 0x${tag.toString(16)}`);
    }
    this.pos = t.end;
    return t;
  }

  /** The next child if it has the tag, else undefined. */
  optional(tag: number, name: string): Tlv | undefined {
    return this.peekTag() === tag ? this.next(tag, name) : undefined;
  }

  /** All remaining children. */
  rest(name: string): Tlv[] {
    const out: Tlv[] = [];
    while (!this.done) out.push(this.next(undefined, name));
    return out;
  }

  expectEnd(): void {
    if (this.pos !== this.end) throw malformed(`${this.what}: unexpected trailing elements`);
  }
}

export const valueOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.valueStart, t.end);
export const rawOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);

export function readOid(buf: Buffer, t: Tlv, what: string): string {
  if (t.tag !== TAG.OID) throw malformed(`${what}: expected OBJECT IDENTIFIER`);
  if (t.end === t.valueStart) throw malformed(`${what}: empty OBJECT IDENTIFIER`);
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (let i = t.valueStart; i < t.end; i++) {
    const b = buf[i]!;
    if (fresh && b === 0x80) throw malformed(`${what}: OID arc is not minimally encoded`);
    if (v > Number.MAX_SAFE_INTEGER / 256) throw malformed(`${what}: OID arc too large`);
    v = v * 128 + (b & 0x7f);
    fresh = false;
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
      fresh = true;
    }
  }
  if (!fresh) throw malformed(`${what}: truncated OID`);
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** The magnitude bytes of a non-negative INTEGER (strict DER: minimal, no negative values). */
export function readUnsignedInteger(buf: Buffer, t: Tlv, what: string): Buffer {
  if (t.tag !== TAG.INTEGER) throw malformed(`${what}: expected INTEGER`);
  const v = valueOf(buf, t);
  if (v.length === 0) throw malformed(`${what}: empty INTEGER`);
  if (v.length > 1 && ((v[0] === 0 && !(v[1]! & 0x80)) || (v[0] === 0xff && v[1]! & 0x80))) {
    throw malformed(`${what}: INTEGER is not minimally encoded`);
  }
  if (v[0]! & 0x80) throw malformed(`${what}: negative INTEGER`);
  return v[0] === 0 && v.length > 1 ? v.subarray(1) : v;
}

export function readSmallInteger(buf: Buffer, t: Tlv, what: string): number {
  const v = readUnsignedInteger(buf, t, what);
  if (v.length > 6) throw malformed(`${what}: INTEGER too large`);
  return v.readUIntBE(0, v.length);
}

export function readBoolean(buf: Buffer, t: Tlv, what: string): boolean {
  if (t.tag !== TAG.BOOLEAN || t.end - t.valueStart !== 1) throw malformed(`${what}: expected BOOLEAN`);
  const b = buf[t.valueStart]!;
  if (b !== 0 && b !== 0xff) throw malformed(`${what}: BOOLEAN is not DER`);
  return b === 0xff;
}

export interface BitStringValue {
  unusedBits: number;
  bytes: Buffer;
}

export function readBitString(buf: Buffer, t: Tlv, what: string): BitStringValue {
  if (t.tag !== TAG.BIT_STRING) throw malformed(`${what}: expected BIT STRING`);
  if (t.end === t.valueStart) throw malformed(`${what}: empty BIT STRING`);
  const unusedBits = buf[t.valueStart]!;
  const bytes = buf.subarray(t.valueStart + 1, t.end);
  if (unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) throw malformed(`${what}: bad unused-bits count`);
  if (unusedBits && bytes[bytes.length - 1]! & ((1 << unusedBits) - 1)) throw malformed(`${what}: unused bits are not zero`);
  return { unusedBits, bytes };
}

function digits(s: string, from: number, n: number, what: string): number {
  let v = 0;
  for (let i = from; i < from + n; i++) {
    const c = s.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) throw malformed(`${what}: bad digit in time`);
    v = v * 10 + c;
  }
  return v;
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) per RFC 5280 §4.1.2.5, as unix seconds. */
export function readTime(buf: Buffer, t: Tlv, what: string): number {
  const s = buf.toString('latin1', t.valueStart, t.end);
  let year: number;
  let i: number;
  if (t.tag === TAG.UTC_TIME && s.length === 13) {
    const yy = digits(s, 0, 2, what);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    i = 2;
  } else if (t.tag === TAG.GENERALIZED_TIME && s.length === 15) {
    year = digits(s, 0, 4, what);
    i = 4;
  } else {
    throw malformed(`${what}: expected UTCTime or GeneralizedTime in RFC 5280 form`);
  }
  if (s[s.length - 1] !== 'Z') throw malformed(`${what}: time must end in Z`);
  const month = digits(s, i, 2, what);
  const day = digits(s, i + 2, 2, what);
  const hour = digits(s, i + 4, 2, what);
  const minute = digits(s, i + 6, 2, what);
  const second = digits(s, i + 8, 2, what);
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // not Date.UTC: it maps years 0-99 to 1900-1999
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) {
    throw malformed(`${what}: invalid calendar date`);
  }
  if (hour > 23 || minute > 59 || second > 59) throw malformed(`${what}: invalid time of day`);
  return d.getTime() / 1000 + hour * 3600 + minute * 60 + second;
}
