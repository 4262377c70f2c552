import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import { concatDer, splitDerCertificates } from '../../../src/common/x509/chain.js';
import {
  exportPkcs8Der,
  exportSpkiDer,
  generateKeyPair,
  importPkcs8Der,
  importSpkiDer,
  keyKindOf,
  privateKeyFromPem,
  privateKeyToPem,
} from '../../../src/common/x509/keys.js';
import { makeIntermediate, makeRoot, rsaKeyPair } from './fixtures.js';

const isInvalid = (pattern: RegExp) => (err: unknown) => isEmblemError(err, 'invalid_argument') && pattern.test((err as Error).message);

describe('x509 keys', () => {
  it('generates EC P-256 key pairs', () => {
    const kp = generateKeyPair();
    assert.equal(kp.privateKey.asymmetricKeyType, 'ec');
    assert.equal(kp.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(keyKindOf(kp.publicKey), 'ec-p256');
  });

  it('round-trips PKCS#8 DER, SPKI DER and PEM', () => {
    const kp = generateKeyPair();
    const pkcs8 = exportPkcs8Der(kp.privateKey);
    const back = importPkcs8Der(pkcs8);
    const data = Buffer.from('hello');
    assert.ok(verify('sha256', data, kp.publicKey, sign('sha256', data, back)));
    assert.deepEqual(exportSpkiDer(kp.privateKey), exportSpkiDer(kp.publicKey));
    assert.deepEqual(exportSpkiDer(importSpkiDer(exportSpkiDer(kp.publicKey))), exportSpkiDer(kp.publicKey));
    const pem = privateKeyToPem(kp.privateKey);
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.deepEqual(exportPkcs8Der(privateKeyFromPem(pem)), pkcs8);
  });

  it('rejects garbage keys and public keys where private ones are needed', () => {
    assert.throws(() => importPkcs8Der(Buffer.from('3000', 'hex')), isInvalid(/PKCS#8/));
    assert.throws(() => importSpkiDer(Buffer.from('not a key')), isInvalid(/SubjectPublicKeyInfo/));
    assert.throws(() => privateKeyFromPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), isInvalid(/PEM/));
    assert.throws(() => exportPkcs8Der(generateKeyPair().publicKey), isInvalid(/private key/));
  });

  it('enforces the key policy: P-256, P-384, RSA 2048-8192, Ed25519', () => {
    assert.equal(keyKindOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'ec-p384');
    assert.equal(keyKindOf(generateKeyPairSync('ed25519').publicKey), 'ed25519');
    assert.equal(keyKindOf(rsaKeyPair(2048).publicKey), 'rsa');
    assert.throws(() => keyKindOf(rsaKeyPair(1024).publicKey), isInvalid(/1024 bits is too small/));
    assert.throws(() => keyKindOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey), isInvalid(/secp256k1/));
    assert.throws(() => keyKindOf(generateKeyPairSync('ed448').publicKey), isInvalid(/ed448/));
  });
});

describe('x509 chains as concatenated DER', () => {
  it('splits what concatDer joins, in order', () => {
    const root = makeRoot();
    const inter = makeIntermediate(root);
    const joined = concatDer([inter.der, root.der]);
    assert.equal(joined.length, inter.der.length + root.der.length);
    const parts = splitDerCertificates(joined);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts[0], inter.der);
    assert.deepEqual(parts[1], root.der);
    assert.deepEqual(splitDerCertificates(Buffer.alloc(0)), []);
  });

  it('rejects truncated, padded or non-SEQUENCE input', () => {
    const root = makeRoot();
    assert.throws(() => splitDerCertificates(root.der.subarray(0, root.der.length - 1)), isInvalid(/certificate 0 in chain/));
    assert.throws(() => splitDerCertificates(Buffer.concat([root.der, Buffer.from([0])])), isInvalid(/certificate 1 in chain/));
    assert.throws(() => splitDerCertificates(Buffer.concat([root.der, Buffer.from('0400', 'hex')])), isInvalid(/not a DER SEQUENCE/));
    assert.throws(() => splitDerCertificates(Buffer.from('-----BEGIN CERTIFICATE-----')), isInvalid(/certificate 0/));
  });
});
