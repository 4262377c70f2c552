import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import {
  DerCursor,
  bitString,
  oid,
  readBitString,
  readOid,
  readSmallInteger,
  readTime,
  readTlv,
  readTop,
  readUnsignedInteger,
  sequence,
  setOf,
  smallInteger,
  time,
  tlv,
  TAG,
  unsignedInteger,
} from '../../../src/common/x509/der.js';
import { parseCertificate } from '../../../src/common/x509/cert-parse.js';
import { createCsr, parseCsr } from '../../../src/common/x509/csr.js';
import { mintX509Svid } from '../../../src/common/x509/leaf.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { makeRoot } from './fixtures.js';

const hex = (b: Buffer): string => b.toString('hex');
const invalid = (fn: () => unknown, pattern?: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), `expected EmblemError(invalid_argument), got ${String(err)}`);
    if (pattern) assert.match((err as Error).message, pattern);
    return true;
  });
};

describe('DER writer', () => {
  it('encodes short and long lengths minimally', () => {
    assert.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(3))), '0403000000');
    assert.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(127)).subarray(0, 2)), '047f');
    assert.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(128)).subarray(0, 3)), '048180');
    assert.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(256)).subarray(0, 4)), '04820100');
    assert.equal(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(70000)).subarray(0, 5)), '0483011170');
  });

  it('encodes INTEGERs as minimal two-complement positives', () => {
    assert.equal(hex(smallInteger(0)), '020100');
    assert.equal(hex(smallInteger(127)), '02017f');
    assert.equal(hex(smallInteger(128)), '02020080');
    assert.equal(hex(smallInteger(256)), '02020100');
    assert.equal(hex(unsignedInteger(Buffer.from('0000ff', 'hex'))), '020200ff');
    assert.equal(hex(unsignedInteger(Buffer.from('000001', 'hex'))), '020101');
  });

  it('encodes OIDs, including multi-byte arcs', () => {
    assert.equal(hex(oid('2.5.29.17')), '0603551d11');
    assert.equal(hex(oid('1.2.840.10045.4.3.2')), '06082a8648ce3d040302');
    assert.equal(hex(oid('1.3.6.1.5.5.7.3.1')), '06082b06010505070301');
    assert.throws(() => oid('3.1'), RangeError);
  });

  it('sorts SET OF elements by encoding', () => {
    assert.equal(hex(setOf(Buffer.from('0402bbbb', 'hex'), Buffer.from('0401aa', 'hex'))), '31070401aa0402bbbb');
  });

  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)', () => {
    const utc = time(Date.UTC(2049, 11, 31, 23, 59, 59) / 1000);
    assert.equal(utc[0], TAG.UTC_TIME);
    assert.equal(utc.subarray(2).toString(), '491231235959Z');
    const gen = time(Date.UTC(2050, 0, 1) / 1000);
    assert.equal(gen[0], TAG.GENERALIZED_TIME);
    assert.equal(gen.subarray(2).toString(), '20500101000000Z');
    const old = time(Date.UTC(1999, 0, 2, 3, 4, 5) / 1000);
    assert.equal(old.subarray(2).toString(), '990102030405Z');
  });
});

describe('DER reader', () => {
  it('round-trips what the writer produces', () => {
    const buf = sequence(smallInteger(5), oid('1.2.840.113549.1.1.11'), bitString(Buffer.from([0xa0]), 5), time(1700000000));
    const top = readTop(buf, TAG.SEQUENCE, 'test');
    const c = new DerCursor(buf, top, 'test');
    assert.equal(readSmallInteger(buf, c.next(TAG.INTEGER, 'n'), 'n'), 5);
    assert.equal(readOid(buf, c.next(TAG.OID, 'oid'), 'oid'), '1.2.840.113549.1.1.11');
    assert.deepEqual(readBitString(buf, c.next(TAG.BIT_STRING, 'bits'), 'bits'), { unusedBits: 5, bytes: Buffer.from([0xa0]) });
    assert.equal(readTime(buf, c.next(undefined, 't'), 't'), 1700000000);
    assert.equal(c.done, true);
    c.expectEnd();
  });

  it('reads both time forms and rejects the forms RFC 5280 forbids', () => {
    const t = (tag: number, s: string): number => {
      const b = tlv(tag, Buffer.from(s));
      return readTime(b, readTop(b, tag, 't'), 't');
    };
    assert.equal(t(TAG.UTC_TIME, '500101000000Z'), Date.UTC(1950, 0, 1) / 1000);
    assert.equal(t(TAG.UTC_TIME, '491231235959Z'), Date.UTC(2049, 11, 31, 23, 59, 59) / 1000);
    assert.equal(t(TAG.GENERALIZED_TIME, '20500101000000Z'), Date.UTC(2050, 0, 1) / 1000);
    invalid(() => t(TAG.UTC_TIME, '5001010000Z'), /RFC 5280 form/); // no seconds
    invalid(() => t(TAG.UTC_TIME, '500101000000+0100'), /RFC 5280 form/);
    invalid(() => t(TAG.GENERALIZED_TIME, '20500101000000.5Z'), /RFC 5280 form/);
    invalid(() => t(TAG.UTC_TIME, '501301000000Z'), /calendar/); // month 13
    invalid(() => t(TAG.UTC_TIME, '500230000000Z'), /calendar/); // 30 February
    invalid(() => t(TAG.UTC_TIME, '500101250000Z'), /time of day/);
    invalid(() => t(TAG.UTC_TIME, '50010100000aZ'), /digit/);
  });

  it('rejects non-DER lengths, truncation and trailing bytes', () => {
    invalid(() => readTop(Buffer.from('3080', 'hex'), TAG.SEQUENCE, 'x'), /indefinite/);
    invalid(() => readTop(Buffer.from('30810100', 'hex'), TAG.SEQUENCE, 'x'), /minimally/);
    invalid(() => readTop(Buffer.from('3082000100', 'hex'), TAG.SEQUENCE, 'x'), /minimally/);
    invalid(() => readTop(Buffer.from('3004020100', 'hex'), TAG.SEQUENCE, 'x'), /past its container/);
    invalid(() => readTop(Buffer.from('300002', 'hex'), TAG.SEQUENCE, 'x'), /trailing/);
    invalid(() => readTop(Buffer.from('30', 'hex'), TAG.SEQUENCE, 'x'), /truncated/);
    invalid(() => readTop(Buffer.from('3085ffffffffff', 'hex'), TAG.SEQUENCE, 'x'), /too large/);
    invalid(() => readTop(Buffer.from('1f0100', 'hex'), 0x1f, 'x'), /high tag/);
    invalid(() => readTop(Buffer.from('0400', 'hex'), TAG.SEQUENCE, 'x'), /expected tag/);
    // A child may not run past its parent even if the buffer goes on.
    const b = Buffer.from('3002040300000000', 'hex');
    invalid(() => readTlv(b, 2, 4, 'child'), /past its container/);
  });

  it('rejects non-minimal and negative INTEGERs, bad OIDs and bad BIT STRINGs', () => {
    const int = (h: string): Buffer => {
      const b = Buffer.from(h, 'hex');
      return readUnsignedInteger(b, readTop(b, TAG.INTEGER, 'i'), 'i');
    };
    assert.equal(hex(int('020200ff')), 'ff');
    invalid(() => int('02020001'), /minimally/);
    invalid(() => int('0201ff'), /negative/);
    invalid(() => int('0200'), /empty/);
    const o = (h: string): string => {
      const b = Buffer.from(h, 'hex');
      return readOid(b, readTop(b, TAG.OID, 'o'), 'o');
    };
    invalid(() => o('0600'), /empty/);
    invalid(() => o('06022a86'), /truncated/);
    invalid(() => o('06032a8001'), /minimally/);
    invalid(() => o('060b2affffffffffffffffff7f'), /too large/);
    const bits = (h: string): unknown => {
      const b = Buffer.from(h, 'hex');
      return readBitString(b, readTop(b, TAG.BIT_STRING, 'b'), 'b');
    };
    invalid(() => bits('0300'), /empty/);
    invalid(() => bits('030208ff'), /unused-bits/);
    invalid(() => bits('030203ff'), /not zero/);
  });

  it('never throws anything but EmblemError on truncated, mutated or random input', () => {
    const ca = makeRoot();
    const leaf = mintX509Svid(ca.issuer, {
      spiffeId: 'spiffe://example.org/ns/fuzz',
      publicKey: generateKeyPair().publicKey,
      dnsNames: ['fuzz.example.org'],
      ttlSeconds: 60,
    }).der;
    const csr = createCsr(generateKeyPair());
    const parsers: [string, (b: Buffer) => unknown, Buffer][] = [
      ['certificate', (b) => parseCertificate(b), leaf],
      ['CSR', (b) => parseCsr(b), csr],
    ];
    for (const [name, parse, good] of parsers) {
      parse(good);
      const inputs: Buffer[] = [Buffer.alloc(0)];
      for (let len = 0; len < good.length; len += 7) inputs.push(good.subarray(0, len));
      for (let i = 0; i < 400; i++) {
        const m = Buffer.from(good);
        m[Math.floor(Math.random() * m.length)] = Math.floor(Math.random() * 256);
        inputs.push(m);
        inputs.push(randomBytes(1 + Math.floor(Math.random() * 300)));
        inputs.push(Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), randomBytes(256)]));
      }
      for (const input of inputs) {
        try {
          parse(input);
        } catch (err) {
          assert.ok(isEmblemError(err, 'invalid_argument'), `${name}: ${input.toString('hex')} threw ${String(err)}`);
        }
      }
    }
  });
});
