// generateKeyPair lays out its keys' DER itself (see keys.ts); it must be exactly what OpenSSL
// writes, and the key pair must behave like any other.
import assert from 'node:assert/strict';
import { createECDH, createPrivateKey, createPublicKey, ECDH, generateKeyPairSync, sign, verify } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import { createCsr, parseCsr } from '../../../src/common/x509/csr.js';
import { exportPkcs8Der, exportSpkiDer, generateKeyPair, generateP256PrivateKey, isCanonicalP256Spki, p256Encodings } from '../../../src/common/x509/keys.js';

/** The DER OpenSSL writes for the P-256 key with scalar `d` (imported from JWK, not generated). */
function opensslDer(d: Buffer, point: Buffer): { spki: Buffer; pkcs8: Buffer } {
  const key = createPrivateKey({
    key: { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: point.toString('base64url', 1, 33), y: point.toString('base64url', 33) },
    format: 'jwk',
  });
  return { spki: createPublicKey(key).export({ format: 'der', type: 'spki' }), pkcs8: key.export({ format: 'der', type: 'pkcs8' }) };
}

describe('generated P-256 key encodings', () => {
  it('exports byte-identical SPKI and PKCS#8 DER to OpenSSL for generated keys', () => {
    for (let i = 0; i < 200; i++) {
      const { privateKey, publicKey } = generateKeyPair();
      assert.deepEqual(exportSpkiDer(publicKey), publicKey.export({ format: 'der', type: 'spki' }));
      assert.deepEqual(exportSpkiDer(privateKey), publicKey.export({ format: 'der', type: 'spki' }));
      assert.deepEqual(exportPkcs8Der(privateKey), privateKey.export({ format: 'der', type: 'pkcs8' }));
    }
  });

  it('generateP256PrivateKey: a fresh key each time, its encodings exactly OpenSSL\'s', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const privateKey = generateP256PrivateKey();
      const spki = exportSpkiDer(privateKey);
      assert.deepEqual(spki, createPublicKey(privateKey).export({ format: 'der', type: 'spki' }));
      assert.deepEqual(exportPkcs8Der(privateKey), privateKey.export({ format: 'der', type: 'pkcs8' }));
      seen.add(spki.toString('hex'));
    }
    assert.equal(seen.size, 50);
  });

  it('isCanonicalP256Spki accepts exactly OpenSSL\'s form of an uncompressed P-256 key', () => {
    const spki = exportSpkiDer(generateKeyPair().publicKey);
    assert.equal(isCanonicalP256Spki(spki), true);
    const compressedPoint = ECDH.convertKey(spki.subarray(26), 'prime256v1', undefined, undefined, 'compressed') as Buffer;
    const compressed = Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), compressedPoint]);
    assert.ok(createPublicKey({ key: compressed, format: 'der', type: 'spki' }), 'a valid SPKI, just not the canonical form');
    assert.equal(isCanonicalP256Spki(compressed), false);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'der', type: 'spki' });
    assert.equal(isCanonicalP256Spki(p384), false);
    const bent = Buffer.from(spki);
    bent[3]! ^= 1;
    assert.equal(isCanonicalP256Spki(bent), false);
    assert.equal(isCanonicalP256Spki(spki.subarray(0, spki.length - 1)), false);
  });

  it('lays out a scalar with leading zero bytes at full length', () => {
    const ecdh = createECDH('prime256v1');
    const d = Buffer.alloc(32, 0x11);
    d[0] = 0;
    d[1] = 0;
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey();
    assert.deepEqual(p256Encodings(d, point), opensslDer(d, point));
  });

  it('rejects key material of the wrong size', () => {
    const point = generateKeyPair().publicKey.export({ format: 'der', type: 'spki' }).subarray(26);
    assert.throws(() => p256Encodings(Buffer.alloc(31, 1), point), (err) => isEmblemError(err, 'invalid_argument'));
    assert.throws(() => p256Encodings(Buffer.alloc(32, 1), point.subarray(1)), (err) => isEmblemError(err, 'invalid_argument'));
  });

  it('returns copies, so a caller cannot corrupt the key cache', () => {
    const { privateKey } = generateKeyPair();
    const first = exportPkcs8Der(privateKey);
    first.fill(0);
    assert.notDeepEqual(exportPkcs8Der(privateKey), first);
  });

  it('signs, verifies and proves possession in a CSR like any key pair', () => {
    const kp = generateKeyPair();
    const data = Buffer.from('emblem');
    assert.ok(verify('sha256', data, kp.publicKey, sign('sha256', data, kp.privateKey)));
    const csr = parseCsr(createCsr(kp));
    assert.deepEqual(csr.spkiDer, exportSpkiDer(kp.publicKey));
  });

  it('still exports keys it did not generate through OpenSSL', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const d = Buffer.alloc(32);
    ecdh.getPrivateKey().copy(d, 32 - ecdh.getPrivateKey().length);
    const point = ecdh.getPublicKey();
    const expected = opensslDer(d, point);
    const imported = createPrivateKey({ key: expected.pkcs8, format: 'der', type: 'pkcs8' });
    assert.deepEqual(exportPkcs8Der(imported), expected.pkcs8);
    assert.deepEqual(exportSpkiDer(imported), expected.spki);
  });
});

