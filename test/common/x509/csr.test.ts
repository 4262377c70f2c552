import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, sign } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import { createCsr, MAX_CSR_BYTES, parseCsr } from '../../../src/common/x509/csr.js';
import { bitString, nullValue, oid, sequence, smallInteger, tlv } from '../../../src/common/x509/der.js';
import { exportSpkiDer, generateKeyPair, type KeyPair } from '../../../src/common/x509/keys.js';
import { OID } from '../../../src/common/x509/oids.js';
import { ed25519KeyPair, flipByte, openssl, opensslBuffer, p384KeyPair, rsaKeyPair, tempDir } from './fixtures.js';

const rejected = (pattern: RegExp) => (err: unknown) => isEmblemError(err, 'invalid_argument') && pattern.test((err as Error).message);

/** A CSR assembled by hand, to get structures our createCsr never makes. */
function handCsr(keys: KeyPair, opts: { version?: number; algorithm?: Buffer; signWith?: string } = {}): Buffer {
  const info = sequence(smallInteger(opts.version ?? 0), sequence(), exportSpkiDer(keys.publicKey), tlv(0xa0));
  const algorithm = opts.algorithm ?? sequence(oid(OID.ecdsaWithSha256));
  return sequence(info, algorithm, bitString(sign(opts.signWith ?? 'sha256', info, keys.privateKey)));
}

describe('createCsr / parseCsr', () => {
  it('round-trips for P-256, P-384, RSA-2048 and Ed25519 keys', () => {
    for (const keys of [generateKeyPair(), p384KeyPair(), rsaKeyPair(2048), ed25519KeyPair()]) {
      const parsed = parseCsr(createCsr(keys));
      assert.deepEqual(parsed.spkiDer, exportSpkiDer(keys.publicKey));
      assert.ok(parsed.publicKey.equals(keys.publicKey));
    }
  });

  it('rejects a tampered signature and a tampered public key', () => {
    const keys = generateKeyPair();
    const csr = createCsr(keys);
    assert.throws(() => parseCsr(flipByte(csr, -1)), rejected(/signature does not verify/));
    const spki = exportSpkiDer(keys.publicKey);
    const keyEnd = csr.indexOf(spki) + spki.length;
    // Last byte of the EC point: the point leaves the curve (import fails) or the signature fails.
    assert.throws(() => parseCsr(flipByte(csr, keyEnd - 1)), rejected(/CSR|public key/));
    // Swap in another key: well-formed, but no proof of possession.
    const other = exportSpkiDer(generateKeyPair().publicKey);
    const swapped = Buffer.concat([csr.subarray(0, keyEnd - spki.length), other, csr.subarray(keyEnd)]);
    assert.throws(() => parseCsr(swapped), rejected(/signature does not verify/));
    const rsa = rsaKeyPair();
    assert.throws(() => parseCsr(flipByte(createCsr(rsa), -1)), rejected(/signature does not verify/));
  });

  it('rejects wrong versions, algorithm parameters and algorithm/key mismatches', () => {
    const keys = generateKeyPair();
    assert.ok(parseCsr(handCsr(keys)));
    assert.throws(() => parseCsr(handCsr(keys, { version: 1 })), rejected(/version/));
    assert.throws(() => parseCsr(handCsr(keys, { algorithm: sequence(oid(OID.ecdsaWithSha256), nullValue()) })), rejected(/parameters/));
    assert.throws(() => parseCsr(handCsr(keys, { algorithm: sequence(oid(OID.sha256WithRsa), nullValue()) })), rejected(/cannot be used with a ec-p256 key/));
    assert.throws(() => parseCsr(handCsr(keys, { algorithm: sequence(oid('1.2.840.10045.4.1')) })), rejected(/not supported/)); // ecdsa-with-SHA1
    // Declares SHA-384 but was signed over SHA-256.
    assert.throws(() => parseCsr(handCsr(keys, { algorithm: sequence(oid(OID.ecdsaWithSha384)) })), rejected(/signature does not verify/));
    assert.ok(parseCsr(handCsr(keys, { algorithm: sequence(oid(OID.ecdsaWithSha384)), signWith: 'sha384' })));
  });

  it('rejects weak or unsupported keys', () => {
    assert.throws(() => parseCsr(handCsr(rsaKeyPair(1024), { algorithm: sequence(oid(OID.sha256WithRsa), nullValue()) })), rejected(/1024 bits is too small/));
  });

  it('rejects garbage, truncation and oversize input with EmblemError only', () => {
    const csr = createCsr(generateKeyPair());
    assert.throws(() => parseCsr(Buffer.alloc(0)), rejected(/malformed DER/));
    assert.throws(() => parseCsr(Buffer.from('hello world')), rejected(/malformed DER/));
    assert.throws(() => parseCsr(csr.subarray(0, csr.length - 3)), rejected(/malformed DER/));
    assert.throws(() => parseCsr(Buffer.concat([csr, Buffer.from([0])])), rejected(/trailing/));
    assert.throws(() => parseCsr(Buffer.alloc(MAX_CSR_BYTES + 1)), rejected(/larger than/));
    assert.throws(() => parseCsr('MIIB' as unknown as Buffer), rejected(/byte buffer/));
  });
});

describe('parseCsr with CSRs made by openssl', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  function opensslCsr(name: string, genArgs: string[], reqArgs: string[] = []): Buffer {
    const key = `${tmp.dir}/${name}.key.pem`;
    openssl(['genpkey', ...genArgs, '-out', key]);
    return opensslBuffer(['req', '-new', '-key', key, '-subj', '/CN=x', '-outform', 'DER', ...reqArgs]);
  }

  it('accepts EC P-256, EC P-384, RSA-2048 and Ed25519 requests', () => {
    for (const [name, args] of [
      ['p256', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']],
      ['p384', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']],
      ['rsa2048', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
      ['ed25519', ['-algorithm', 'ED25519']],
    ] as const) {
      const csr = opensslCsr(name, [...args]);
      const parsed = parseCsr(csr);
      const pubFromOpenssl = opensslBuffer(['pkey', '-in', `${tmp.dir}/${name}.key.pem`, '-pubout', '-outform', 'DER']);
      assert.deepEqual(parsed.spkiDer, pubFromOpenssl, name);
    }
  });

  it('accepts an EC key with a compressed point', () => {
    const plain = `${tmp.dir}/c0.key.pem`;
    const compressed = `${tmp.dir}/c.key.pem`;
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', plain]);
    openssl(['ec', '-in', plain, '-conv_form', 'compressed', '-out', compressed]);
    const csr = opensslBuffer(['req', '-new', '-key', compressed, '-subj', '/CN=x', '-outform', 'DER']);
    const parsed = parseCsr(csr);
    assert.equal(parsed.spkiDer.length, 59); // 33-byte point
    const uncompressed = opensslBuffer(['pkey', '-in', plain, '-pubout', '-outform', 'DER']);
    assert.ok(parsed.publicKey.equals(createPublicKey({ key: uncompressed, format: 'der', type: 'spki' })));
  });

  it('ignores subject and requested extensions', () => {
    const csr = opensslCsr('ext', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'], ['-addext', 'subjectAltName=URI:spiffe://evil.org/admin', '-sha384']);
    assert.ok(parseCsr(csr).publicKey);
  });

  it('rejects RSA-1024 and keys on other curves', () => {
    assert.throws(() => parseCsr(opensslCsr('rsa1024', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'])), rejected(/too small/));
    assert.throws(() => parseCsr(opensslCsr('k1', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1'])), rejected(/curve/));
  });

  it('our CSRs pass `openssl req -verify`', () => {
    for (const keys of [generateKeyPair(), rsaKeyPair(), ed25519KeyPair()]) {
      const file = tmp.file('ours.csr', createCsr(keys));
      const out = execVerify(file);
      assert.match(out, /verify OK|Certificate request self-signature verify OK/);
    }
  });

  function execVerify(file: string): string {
    const r = spawnSync('openssl', ['req', '-inform', 'DER', '-in', file, '-verify', '-noout'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout + r.stderr;
  }
});
