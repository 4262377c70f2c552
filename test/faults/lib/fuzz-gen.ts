// Seeded generators of hostile input for the fuzz tests: a small PRNG (so every failure is
// reproducible from the seed and case number), random and mutated byte strings, raw protobuf fields
// of 1-8 MiB, and pools of invalid SPIFFE IDs, CSRs and JWTs.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  /** Integer in [min, max]. */
  range(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
  bytes(n: number): Buffer;
}

/** mulberry32: tiny, fast, good enough to drive a fuzzer; the same seed gives the same cases. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    range: (min, max) => min + int(max - min + 1),
    pick: (items) => items[int(items.length)]!,
    chance: (p) => next() < p,
    bytes(n) {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        const word = (next() * 4294967296) >>> 0;
        for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (word >>> (8 * j)) & 0xff;
      }
      return out;
    },
  };
}

/** Bit flips, byte overwrites, insertions, deletions, truncation or duplication of a slice. */
export function mutate(rng: Rng, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    const at = buf.length === 0 ? 0 : rng.int(buf.length);
    switch (rng.int(6)) {
      case 0:
        if (buf.length > 0) buf[at] = buf[at]! ^ (1 << rng.int(8));
        break;
      case 1:
        if (buf.length > 0) buf[at] = rng.pick([0x00, 0xff, 0x7f, 0x80, rng.int(256)]);
        break;
      case 2:
        buf = Buffer.concat([buf.subarray(0, at), rng.bytes(rng.range(1, 8)), buf.subarray(at)]);
        break;
      case 3:
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(buf.length, at + rng.range(1, 8)))]);
        break;
      case 4:
        buf = buf.subarray(0, at);
        break;
      default: {
        const len = rng.range(1, Math.max(1, Math.min(64, buf.length)));
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + len), buf.subarray(at)]);
      }
    }
  }
  return buf;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

/** One length-delimited protobuf field (strings, bytes, sub-messages). */
export function protoField(fieldNumber: number, value: Buffer): Buffer {
  return Buffer.concat([varint((fieldNumber << 3) | 2), varint(value.length), value]);
}

export const MIB = 1024 * 1024;

/** A message whose length-delimited field `fieldNumber` holds 1-8 MiB (text or binary). */
export function hugeField(rng: Rng, fieldNumber: number): Buffer {
  const size = rng.range(1 * MIB, 8 * MIB);
  const value = rng.chance(0.5) ? Buffer.alloc(size, rng.pick(['a', '/', 'z', '.'])) : rng.bytes(size);
  return protoField(fieldNumber, value);
}

/** Raw bytes that are often not protobuf at all: random, truncated headers, bad wire types, bad lengths. */
export function junkBytes(rng: Rng): Buffer {
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(rng.range(0, 64));
    case 1:
      return rng.bytes(rng.range(64, 4096));
    case 2:
      // A length-delimited field claiming more bytes than follow.
      return Buffer.concat([varint((rng.range(1, 15) << 3) | 2), varint(rng.range(10, 1 << 28)), rng.bytes(rng.range(0, 8))]);
    case 3:
      // Wire types 3, 4 (groups), 6 and 7 (invalid) and an unterminated varint.
      return Buffer.concat([Buffer.from([(rng.range(1, 15) << 3) | rng.pick([3, 4, 6, 7])]), rng.bytes(rng.range(0, 16))]);
    default:
      return Buffer.concat([Buffer.from([0x08]), Buffer.alloc(rng.range(1, 12), 0xff)]);
  }
}

// --- SPIFFE IDs ------------------------------------------------------------------------------

/** IDs the SPIFFE ID rules reject (SPIFFE.md §1), plus some that are valid but foreign or absurd. */
export function invalidSpiffeIds(trustDomain: string): string[] {
  const td = trustDomain;
  return [
    '',
    'spiffe://',
    'spiffe:///x',
    `http://${td}/x`,
    `SPIFFE://${td}/x`,
    `spiffe://${td.toUpperCase()}/x`,
    `spiffe://${td}/a//b`,
    `spiffe://${td}/./x`,
    `spiffe://${td}/../x`,
    `spiffe://${td}/x/`,
    `spiffe://${td}:8443/x`,
    `spiffe://user@${td}/x`,
    `spiffe://${td}/x?query=1`,
    `spiffe://${td}/x#frag`,
    `spiffe://${td}/%41`,
    `spiffe://${td}/a b`,
    `spiffe://${td}/\u0000`,
    `spiffe://${td}/\u00e9`,
    ` spiffe://${td}/x`,
    `spiffe://${td}/x\n`,
    `spiffe://t\u0111/x`,
    `spiffe://${'a'.repeat(256)}/x`,
    `spiffe://${td}/${'p'.repeat(3000)}`,
    `spiffe://${td}/${'seg/'.repeat(600)}end`,
    'spiffe://other.test/workload',
    `spiffe://${td}`,
    `spiffe://${td}/emblem/agent/join_token/00000000000000000000000000000000`,
    `spiffe://${td}/emblem/server`,
    'not a uri at all',
    '\uffff\ud800',
  ];
}

// --- CSRs ------------------------------------------------------------------------------------

function derLength(buf: Buffer, at: number): { length: number; header: number } {
  const first = buf[at]!;
  if (first < 0x80) return { length: first, header: 1 };
  const n = first & 0x7f;
  return { length: buf.subarray(at + 1, at + 1 + n).reduce((acc, byte) => acc * 256 + byte, 0), header: 1 + n };
}

/** The TLVs directly inside the top-level DER SEQUENCE of a (well-formed) buffer. */
export function derChildren(der: Buffer): Buffer[] {
  const top = derLength(der, 1);
  const children: Buffer[] = [];
  for (let at = 1 + top.header; at < der.length; ) {
    const { length, header } = derLength(der, at + 1);
    children.push(der.subarray(at, at + 1 + header + length));
    at += 1 + header + length;
  }
  return children;
}

export function derSequence(children: Buffer[]): Buffer {
  const body = Buffer.concat(children);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : body.length < 0x100 ? Buffer.from([0x81, body.length]) : Buffer.from([0x82, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}

/**
 * `certificate` with its SubjectPublicKeyInfo replaced (the signature no longer verifies; what is
 * tested here is what a parser does with the key).
 */
export function withSpki(certificate: Buffer, spki: Buffer): Buffer {
  const [tbs, algorithm, signature] = derChildren(certificate);
  const fields = derChildren(tbs!);
  const spkiIndex = fields[0]![0] === 0xa0 ? 6 : 5; // after [version], serial, signature, issuer, validity, subject
  fields[spkiIndex] = spki;
  return derSequence([derSequence(fields), algorithm!, signature!]);
}

/** CSRs that must be refused: junk DER, truncation, bad signature, a swapped signature, oversize... */
export function invalidCsrs(rng: Rng): Buffer[] {
  const a = createCsr(generateKeyPair());
  const b = createCsr(generateKeyPair());
  const flipped = Buffer.from(a);
  flipped[flipped.length - 5] = flipped[flipped.length - 5]! ^ 0x01;
  // a's certificationRequestInfo and algorithm with b's signature: well formed, proves nothing.
  const [infoA, algA] = derChildren(a);
  const [, , sigB] = derChildren(b);
  const swapped = derSequence([infoA!, algA!, sigB!]);
  const rsaSmall = generateKeyPairSync('rsa', { modulusLength: 1024 });
  let weakRsa: Buffer;
  try {
    weakRsa = createCsr({ privateKey: rsaSmall.privateKey, publicKey: rsaSmall.publicKey });
  } catch {
    weakRsa = rng.bytes(300);
  }
  const ed448 = generateKeyPairSync('ed448');
  const ed448Sig = sign(null, Buffer.from('x'), ed448.privateKey);
  return [
    Buffer.alloc(0),
    rng.bytes(40),
    rng.bytes(300),
    a.subarray(0, a.length - 10),
    a.subarray(0, 20),
    flipped,
    swapped,
    Buffer.concat([a, Buffer.from([0, 0])]),
    Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00]),
    Buffer.from([0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00]),
    Buffer.concat([Buffer.from([0x30, 0x83, 0x01, 0x20, 0x00]), Buffer.alloc(0x12000, 0x30)]),
    weakRsa,
    Buffer.concat([Buffer.from([0x30, ed448Sig.length + 2, 0x03, ed448Sig.length]), ed448Sig]),
    Buffer.from(a.toString('base64')),
  ];
}

// --- JWTs ------------------------------------------------------------------------------------

const b64url = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Tokens ValidateJWTSVID must refuse; `real` (a genuine JWT-SVID) is mutated into several of them. */
export function invalidJwts(rng: Rng, trustDomain: string, real: string): string[] {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: `spiffe://${trustDomain}/fuzz`, aud: ['fuzz'], exp: now + 600, iat: now };
  const [h, p, s] = real.split('.');
  const es256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const forgedHeader = b64url({ alg: 'ES256', kid: randomUUID(), typ: 'JWT' });
  const forgedBody = b64url(claims);
  const forgedSig = sign('sha256', Buffer.from(`${forgedHeader}.${forgedBody}`), { key: es256.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  const realHeader = JSON.parse(Buffer.from(h ?? '', 'base64url').toString() || '{}') as Record<string, unknown>;
  return [
    '',
    '.',
    '..',
    'a.b.c',
    'a.b.c.d',
    real.slice(0, real.length - 5),
    `${h}.${p}`,
    `${h}.${p}.`,
    `${b64url({ alg: 'none', typ: 'JWT' })}.${forgedBody}.`,
    `${b64url({ alg: 'HS256', kid: realHeader['kid'], typ: 'JWT' })}.${p}.${b64url('secret')}`,
    `${forgedHeader}.${forgedBody}.${forgedSig}`,
    `${h}.${b64url({ ...claims, exp: now - 600 })}.${s}`,
    `${h}.${b64url({ ...claims, sub: 'spiffe://other.test/x' })}.${s}`,
    `${h}.${b64url({ ...claims, sub: 'not-a-spiffe-id' })}.${s}`,
    `${b64url({ ...realHeader, alg: 'RS256' })}.${p}.${s}`,
    `${b64url('x'.repeat(20_000))}.${p}.${s}`,
    `${h}.${p}.${s}`.replace(/[A-Za-z]/, '*'),
    `${h}.${b64url('{not json')}.${s}`,
    `${b64url([1, 2, 3])}.${p}.${s}`,
    rng.bytes(rng.range(1, 200)).toString('latin1'),
    `eyJ${rng.bytes(30).toString('base64url')}.eyJ${rng.bytes(60).toString('base64url')}.${rng.bytes(64).toString('base64url')}`,
  ];
}

/** Short strings that stress parsers: empty, long, control characters, separators, odd Unicode. */
export function oddStrings(rng: Rng): string[] {
  return [
    '',
    ' ',
    'a'.repeat(rng.range(1025, 70_000)),
    '\u0000',
    '\n\r\t',
    ':',
    '::::',
    'uid:',
    'uid:-1',
    'uid:99999999999999999999',
    '../../etc/passwd',
    '%00',
    '\ud800',
    '\u202e',
    'unix',
    '*',
    rng.bytes(rng.range(1, 50)).toString('latin1'),
  ];
}

/** Integers that overflow, underflow or are absurd for TTLs, sizes, revisions and times. */
export const oddIntegers: readonly number[] = [0, -1, 1, -2147483648, 2147483647, 86400 * 365 * 100, 2 ** 53 - 1, -(2 ** 53 - 1), 4294967295];
