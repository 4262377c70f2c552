// Assembles and signs a TBSCertificate (RFC 5280 §4.1) from pre-encoded parts. Shared by the leaf
// hot path and CA creation.
import { randomFillSync, type KeyObject } from 'node:crypto';
import { bitString, sequence, tlv, time, TAG } from './der.js';
import { signData, type SignatureAlgorithm } from './algorithms.js';
import { extensionsField } from './extensions.js';

/** [0] EXPLICIT Version v3 (value 2). */
const VERSION_V3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);

export const SERIAL_BYTES = 16;

const pool = Buffer.allocUnsafe(SERIAL_BYTES * 256);
let poolPos = pool.length;

/**
 * A random positive 16-byte serial: top bit cleared (so the INTEGER needs no sign byte) and first
 * byte non-zero (so the DER encoding is always exactly 16 bytes). That leaves about 127 bits of
 * randomness, far above RFC 5280's 20-octet limit concerns and the CA/B Forum's 64-bit floor.
 */
export function randomSerial(): Buffer {
  for (;;) {
    if (poolPos === pool.length) {
      randomFillSync(pool);
      poolPos = 0;
    }
    const s = Buffer.from(pool.subarray(poolPos, poolPos + SERIAL_BYTES));
    poolPos += SERIAL_BYTES;
    s[0]! &= 0x7f;
    if (s[0] !== 0) return s;
  }
}

export interface TbsParts {
  /** Positive serial, at most 20 bytes, no leading zero byte, top bit clear. */
  serial: Buffer;
  algorithm: SignatureAlgorithm;
  issuerName: Buffer;
  notBefore: number;
  notAfter: number;
  subjectName: Buffer;
  spkiDer: Buffer;
  /** Encoded Extension values, in order. */
  extensions: Buffer[];
}

/** Builds the TBSCertificate and signs it; returns the Certificate DER. */
export function signCertificate(parts: TbsParts, signingKey: KeyObject): Buffer {
  const tbs = sequence(
    VERSION_V3,
    tlv(TAG.INTEGER, parts.serial),
    parts.algorithm.identifier,
    parts.issuerName,
    sequence(time(parts.notBefore), time(parts.notAfter)),
    parts.subjectName,
    parts.spkiDer,
    extensionsField(parts.extensions),
  );
  const signature = signData(parts.algorithm, signingKey, tbs);
  return sequence(tbs, parts.algorithm.identifier, bitString(signature));
}
