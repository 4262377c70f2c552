import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { isEmblemError } from '../../src/common/errors.js';
import {
  certificatesToPem,
  checkCertificateDer,
  splitAndCheckDerCertificates,
  encodePem,
  parseCertificatesFlexible,
  parsePemBlocks,
  parsePemCertificates,
  parsePemPrivateKey,
  privateKeyToPem,
} from '../../src/common/pem.js';
import { makeCaDer } from './x509/fixtures.js';

const invalid = (fn: () => unknown, match: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), String(err));
    assert.match(err.message, match);
    return true;
  });
};

describe('PEM helpers', () => {
  let a: Buffer;
  let b: Buffer;
  before(async () => {
    [a, b] = await Promise.all([makeCaDer('a'), makeCaDer('b')]);
  });

  it('encodes 64-column PEM that OpenSSL (node:crypto) reads back', () => {
    const pem = encodePem('CERTIFICATE', a);
    const lines = pem.trimEnd().split('\n');
    assert.equal(lines[0], '-----BEGIN CERTIFICATE-----');
    assert.equal(lines.at(-1), '-----END CERTIFICATE-----');
    assert.ok(lines.slice(1, -1).every((l) => l.length <= 64));
    assert.ok(pem.endsWith('\n'));
    assert.ok(new X509Certificate(pem).raw.equals(a));
  });

  it('round-trips several certificates, keeping order, skipping text and other blocks', () => {
    const pem = `Subject: a\n${certificatesToPem([a])}\r\n${encodePem('PRIVATE KEY', Buffer.from('xx'))}comment\n${certificatesToPem([b])}`;
    assert.deepEqual(parsePemCertificates(pem), [a, b]);
    assert.deepEqual(parsePemCertificates(certificatesToPem([a, b]).replace(/\n/g, '\r\n')), [a, b]);
  });

  it('rejects garbage, truncated blocks, bad base64 and non-certificates clearly', () => {
    invalid(() => parsePemCertificates('hello world'), /not PEM/);
    invalid(() => parsePemCertificates(''), /not PEM/);
    invalid(() => parsePemCertificates(encodePem('PUBLIC KEY', Buffer.from('x'))), /no CERTIFICATE block/);
    invalid(() => parsePemCertificates(certificatesToPem([a]).replace('-----END CERTIFICATE-----', '')), /has no "-----END CERTIFICATE-----"/);
    invalid(() => parsePemCertificates('-----BEGIN CERTIFICATE-----\nAB$D\n-----END CERTIFICATE-----\n'), /not valid base64/);
    invalid(() => parsePemCertificates('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'), /not valid base64/);
    invalid(() => parsePemCertificates(encodePem('CERTIFICATE', Buffer.from('not a cert'))), /PEM block 1 \(CERTIFICATE\) is not DER/);
    invalid(() => parsePemCertificates(encodePem('CERTIFICATE', Buffer.from([0x30, 0x03, 2, 1, 1]))), /not a valid X.509/);
    invalid(() => parsePemCertificates(certificatesToPem([a]) + encodePem('CERTIFICATE', Buffer.concat([b, Buffer.from([0])]))), /PEM block 2 .* trailing bytes/);
  });

  it('splits concatenated DER and checks each certificate', () => {
    assert.deepEqual(splitAndCheckDerCertificates(Buffer.concat([a, b, a])), [a, b, a]);
    assert.deepEqual(splitAndCheckDerCertificates(Buffer.alloc(0)), []);
    invalid(() => splitAndCheckDerCertificates(Buffer.concat([a, b.subarray(0, b.length - 1)])), /certificate 1 in chain/);
    invalid(() => splitAndCheckDerCertificates(Buffer.concat([a, Buffer.from([0x04, 0x00])])), /certificate 1 in chain is not a DER SEQUENCE/);
    invalid(() => splitAndCheckDerCertificates(Buffer.from([0x30, 0x03, 1, 2, 3])), /DER certificate 1 is not a valid X.509 certificate/);
  });

  it('checkCertificateDer refuses indefinite lengths, trailing bytes and non-certificates', () => {
    invalid(() => checkCertificateDer(Buffer.from([0x30, 0x80, 0, 0]), 'x'), /x is not DER/);
    invalid(() => checkCertificateDer(Buffer.concat([a, Buffer.from([0])]), 'x'), /x has 1 trailing bytes/);
    invalid(() => checkCertificateDer(Buffer.from([0x04, 0x00]), 'x'), /x is not DER \(not a SEQUENCE\)/);
  });

  it('parseCertificatesFlexible takes PEM (string or bytes) or concatenated DER', () => {
    const pem = certificatesToPem([a, b]);
    assert.deepEqual(parseCertificatesFlexible(pem), [a, b]);
    assert.deepEqual(parseCertificatesFlexible(Buffer.from(pem)), [a, b]);
    assert.deepEqual(parseCertificatesFlexible(Buffer.concat([a, b])), [a, b]);
    invalid(() => parseCertificatesFlexible(Buffer.alloc(0)), /input is empty/);
    invalid(() => parseCertificatesFlexible('  \n'), /input is empty/);
    invalid(() => parseCertificatesFlexible(Buffer.from('garbage')), /not PEM/);
  });

  it('parses PKCS#8, SEC1 and PKCS#1 private keys and writes PKCS#8', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pkcs8 = privateKeyToPem(ec.privateKey);
    assert.match(pkcs8, /^-----BEGIN PRIVATE KEY-----\n/);
    const same = (k: ReturnType<typeof parsePemPrivateKey>, expected: typeof ec.privateKey): void => {
      assert.equal(k.type, 'private');
      assert.ok(k.equals(expected));
    };
    same(parsePemPrivateKey(pkcs8), ec.privateKey);
    same(parsePemPrivateKey(ec.privateKey.export({ format: 'pem', type: 'sec1' }) as string), ec.privateKey);
    same(parsePemPrivateKey(rsa.privateKey.export({ format: 'pem', type: 'pkcs1' }) as string), rsa.privateKey);
    same(parsePemPrivateKey(certificatesToPem([a]) + pkcs8), ec.privateKey);
    invalid(() => privateKeyToPem(ec.publicKey), /expected a private key/);
  });

  it('rejects missing, several, encrypted or corrupt private keys without echoing key bytes', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKeyToPem(ec.privateKey);
    invalid(() => parsePemPrivateKey('nothing here'), /not PEM/);
    invalid(() => parsePemPrivateKey(certificatesToPem([a])), /no PRIVATE KEY block/);
    invalid(() => parsePemPrivateKey(pem + pem), /2 private keys/);
    const encrypted = ec.privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }) as string;
    invalid(() => parsePemPrivateKey(encrypted), /encrypted private keys are not supported/);
    const corrupt = encodePem('PRIVATE KEY', Buffer.from('secret-bytes-secret-bytes'));
    assert.throws(
      () => parsePemPrivateKey(corrupt),
      (err: unknown) => isEmblemError(err) && /not a valid private key/.test(err.message) && err.cause === undefined && !err.message.includes('secret'),
    );
  });

  it('parsePemBlocks reports labels in order', () => {
    const text = encodePem('CERTIFICATE', a) + encodePem('EC PRIVATE KEY', Buffer.from([1, 2, 3]));
    assert.deepEqual(
      parsePemBlocks(text).map((blk) => blk.label),
      ['CERTIFICATE', 'EC PRIVATE KEY'],
    );
  });
});
