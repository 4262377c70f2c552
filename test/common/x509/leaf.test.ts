import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { parseCertificate } from '../../../src/common/x509/cert-parse.js';
import { prepareIssuer } from '../../../src/common/x509/issuer.js';
import { exportSpkiDer, generateKeyPair } from '../../../src/common/x509/keys.js';
import { BACKDATE_SECONDS, checkDnsName, mintX509Svid, type MintX509SvidParams } from '../../../src/common/x509/leaf.js';
import { OID } from '../../../src/common/x509/oids.js';
import { ed25519KeyPair, makeIntermediate, makeRoot, p384KeyPair, rsaKeyPair, HOUR } from './fixtures.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
const isCode = (code: 'invalid_argument' | 'failed_precondition', pattern: RegExp) => (err: unknown) =>
  isEmblemError(err, code) && pattern.test((err as Error).message);

describe('mintX509Svid: leaf profile', () => {
  const root = makeRoot();
  const workload = generateKeyPair();
  const mint = (p: Partial<MintX509SvidParams> = {}) =>
    mintX509Svid(root.issuer, { spiffeId: ID, publicKey: workload.publicKey, ttlSeconds: HOUR, ...p });

  it('is a v3 certificate signed with ecdsa-with-SHA256 by the CA, issuer = CA subject bytes', () => {
    const { der } = mint();
    const cert = parseCertificate(der);
    assert.equal(cert.version, 3);
    assert.equal(cert.signatureAlgorithm, OID.ecdsaWithSha256);
    assert.deepEqual(cert.issuerDer, parseCertificate(root.der).subjectDer);
    const x = new X509Certificate(der);
    assert.ok(x.verify(new X509Certificate(root.der).publicKey));
    assert.ok(x.checkIssued(new X509Certificate(root.der)));
  });

  it('has a fixed subject that differs from the CA subject; CN is the first DNS name', () => {
    const plain = readCertificate(mint().der);
    assert.equal(plain.subject, 'C=US, O=Emblem');
    assert.notDeepEqual(plain.subjectDer, plain.issuerDer);
    const withDns = readCertificate(mint({ dnsNames: ['web.example.org', 'web'] }).der);
    assert.equal(withDns.subject, 'C=US, O=Emblem, CN=web.example.org');
    assert.deepEqual(withDns.dnsNames, ['web.example.org', 'web']);
    // RFC 5280 bounds CN at 64 characters: a longer first name stays a SAN only.
    const long = `${'a'.repeat(60)}.example.org`;
    const withLong = readCertificate(mint({ dnsNames: [long] }).der);
    assert.equal(withLong.subject, 'C=US, O=Emblem');
    assert.deepEqual(withLong.dnsNames, [long]);
  });

  it('carries exactly one URI SAN (the SPIFFE ID) plus the DNS names', () => {
    const info = readCertificate(mint({ dnsNames: ['a.example.org', '*.b.example.org'] }).der);
    assert.deepEqual(info.uris, [ID]);
    assert.deepEqual(info.dnsNames, ['a.example.org', '*.b.example.org']);
  });

  it('sets basicConstraints CA=false critical, keyUsage critical, EKU server+client, SKID and AKID', () => {
    const { der } = mint();
    const cert = parseCertificate(der);
    const ext = (oid: string) => cert.extensions.find((e) => e.oid === oid);
    assert.equal(ext(OID.basicConstraints)?.critical, true);
    assert.deepEqual(cert.basicConstraints, { ca: false });
    assert.equal(ext(OID.keyUsage)?.critical, true);
    const info = readCertificate(der);
    assert.equal(info.keyUsage?.digitalSignature, true);
    assert.equal(info.keyUsage?.keyAgreement, true);
    assert.equal(info.keyUsage?.keyEncipherment, false);
    assert.equal(info.keyUsage?.keyCertSign, false);
    assert.equal(info.keyUsage?.cRLSign, false);
    assert.deepEqual(info.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
    assert.equal(info.skid, createHash('sha1').update(cert.publicKeyBits).digest('hex'));
    assert.equal(info.akid, root.issuer.skid.toString('hex'));
    assert.equal(info.akid, readCertificate(root.der).skid);
    assert.equal(ext(OID.subjectAltName)?.critical, false);
  });

  it('sets keyUsage by key type: RSA keyEncipherment, Ed25519 digitalSignature only', () => {
    const rsa = readCertificate(mint({ publicKey: rsaKeyPair().publicKey }).der).keyUsage;
    assert.equal(rsa?.digitalSignature, true);
    assert.equal(rsa?.keyEncipherment, true);
    assert.equal(rsa?.keyAgreement, false);
    const ed = readCertificate(mint({ publicKey: ed25519KeyPair().publicKey }).der).keyUsage;
    assert.equal(ed?.digitalSignature, true);
    assert.equal(ed?.keyEncipherment, false);
    assert.equal(ed?.keyAgreement, false);
    const p384 = readCertificate(mint({ publicKey: p384KeyPair().publicKey }).der).keyUsage;
    assert.equal(p384?.keyAgreement, true);
  });

  it('accepts the public key as a KeyObject or as SPKI DER, with the same result', () => {
    const a = parseCertificate(mint().der);
    const b = parseCertificate(mint({ publicKey: exportSpkiDer(workload.publicKey) }).der);
    assert.deepEqual(a.spkiDer, b.spkiDer);
    assert.deepEqual(a.spkiDer, exportSpkiDer(workload.publicKey));
    assert.deepEqual(a.skid, b.skid);
  });

  it('uses random positive 16-byte serials, unique over many mints', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const { der, serial } = mint();
      assert.match(serial, /^[0-7][0-9a-f]{31}$/);
      assert.notEqual(serial.slice(0, 2), '00');
      seen.add(serial);
      if (i < 20) {
        assert.equal(new X509Certificate(der).serialNumber.toLowerCase(), serial);
        assert.equal(parseCertificate(der).serial, serial);
      }
    }
    assert.equal(seen.size, 3000);
  });

  it('backdates notBefore by 10 s and sets notAfter = now + ttl', () => {
    const now = Date.UTC(2030, 5, 1, 12, 0, 0, 750);
    const ca = makeRoot('example.org', generateKeyPair(), 365 * 24 * HOUR, now);
    const m = mintX509Svid(ca.issuer, { spiffeId: ID, publicKey: workload.publicKey, ttlSeconds: 600, now });
    const nowS = Math.floor(now / 1000);
    assert.equal(BACKDATE_SECONDS, 10);
    assert.equal(m.notBefore, nowS - 10);
    assert.equal(m.notAfter, nowS + 600);
    const x = new X509Certificate(m.der);
    assert.equal(Date.parse(x.validFrom) / 1000, nowS - 10);
    assert.equal(Date.parse(x.validTo) / 1000, nowS + 600);
  });

  it('caps notAfter at the issuer notAfter', () => {
    const now = Date.now();
    const shortRoot = makeRoot('example.org', generateKeyPair(), 120, now);
    const m = mintX509Svid(shortRoot.issuer, { spiffeId: ID, publicKey: workload.publicKey, ttlSeconds: HOUR, now });
    assert.equal(m.notAfter, shortRoot.issuer.notAfter);
    assert.equal(m.notAfter, Math.floor(now / 1000) + 120);
    const inter = makeIntermediate(shortRoot, 'example.org', HOUR, now);
    assert.equal(inter.issuer.notAfter, shortRoot.issuer.notAfter);
    const fromInter = mintX509Svid(inter.issuer, { spiffeId: ID, publicKey: workload.publicKey, ttlSeconds: HOUR, now });
    assert.equal(fromInter.notAfter, shortRoot.issuer.notAfter);
  });

  it('refuses to mint from an expired CA', () => {
    const now = Date.now();
    const old = makeRoot('example.org', generateKeyPair(), 60, now - 3600_000);
    assert.throws(() => mintX509Svid(old.issuer, { spiffeId: ID, publicKey: workload.publicKey, ttlSeconds: 60, now }), isCode('failed_precondition', /expired/));
  });
});

describe('mintX509Svid: input checks', () => {
  const root = makeRoot();
  const pub = generateKeyPair().publicKey;
  const mint = (p: Partial<MintX509SvidParams>) => mintX509Svid(root.issuer, { spiffeId: ID, publicKey: pub, ttlSeconds: HOUR, ...p });

  it('requires a valid SPIFFE ID with a non-root path', () => {
    for (const [id, why] of [
      ['spiffe://example.org', /no path/],
      ['spiffe://Example.org/x', /uppercase/],
      ['spiffe://example.org/x?y', /query/],
      ['spiffe://example.org/x/', /end with/],
      ['https://example.org/x', /spiffe:\/\//],
      ['', /empty/],
    ] as const) {
      assert.throws(() => mint({ spiffeId: id }), isCode('invalid_argument', why), id);
    }
  });

  it('rejects malformed DNS names', () => {
    for (const name of ['', 'a..b', '-a.example.org', 'a-.example.org', 'a_b.example.org', 'a b', 'a.example.org.', '*.org', 'a.*.example.org', '**.example.org', 'x'.repeat(64) + '.org', `${'a.'.repeat(127)}a`, 'é.example.org']) {
      assert.throws(() => mint({ dnsNames: [name] }), isCode('invalid_argument', /DNS name/), name);
    }
    for (const name of ['localhost', 'a.example.org', '*.example.org', 'XN--bcher-kva.example', '0-9.example.org']) checkDnsName(name);
  });

  it('rejects bad TTLs and bad or weak public keys', () => {
    for (const ttl of [0, -1, 1.5, NaN, Infinity]) assert.throws(() => mint({ ttlSeconds: ttl }), isCode('invalid_argument', /ttlSeconds/));
    assert.throws(() => mint({ publicKey: Buffer.from('3003020100', 'hex') }), isCode('invalid_argument', /workload public key/));
    assert.throws(() => mint({ publicKey: Buffer.from('garbage') }), isCode('invalid_argument', /malformed DER/));
    assert.throws(() => mint({ publicKey: rsaKeyPair(1024).publicKey }), isCode('invalid_argument', /too small/));
    assert.throws(() => mint({ publicKey: generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey }), isCode('invalid_argument', /curve/));
  });
});

describe('prepareIssuer', () => {
  it('signs with the algorithm matching the CA key: P-384, RSA, Ed25519', () => {
    for (const [keys, alg] of [
      [p384KeyPair(), OID.ecdsaWithSha384],
      [rsaKeyPair(), OID.sha256WithRsa],
      [ed25519KeyPair(), OID.ed25519],
    ] as const) {
      const ca = makeRoot('example.org', keys);
      const leaf = mintX509Svid(ca.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: 60 });
      assert.equal(parseCertificate(leaf.der).signatureAlgorithm, alg);
      assert.equal(parseCertificate(ca.der).signatureAlgorithm, alg);
      assert.ok(new X509Certificate(leaf.der).verify(keys.publicKey));
    }
  });

  it('knows whether the CA is a root and what to present after a leaf', () => {
    const root = makeRoot();
    assert.equal(root.issuer.selfSigned, true);
    assert.deepEqual(root.issuer.intermediates, []);
    assert.equal(root.issuer.trustDomain, 'example.org');
    const inter = makeIntermediate(root);
    const inter2 = makeIntermediate(inter);
    assert.equal(inter2.issuer.selfSigned, false);
    assert.deepEqual(inter2.issuer.intermediates, [inter2.der, inter.der]);
  });

  it('rejects non-CA certificates, mismatched keys and broken chains above', () => {
    const root = makeRoot();
    const other = makeRoot();
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: 60 });
    assert.throws(() => prepareIssuer(leaf.der, root.keys.privateKey), isCode('invalid_argument', /cA=true/));
    assert.throws(() => prepareIssuer(root.der, other.keys.privateKey), isCode('invalid_argument', /does not match/));
    assert.throws(() => prepareIssuer(root.der, root.keys.publicKey), isCode('invalid_argument', /not a private key/));
    assert.throws(() => prepareIssuer(root.der, root.keys.privateKey, [other.der]), isCode('invalid_argument', /self-signed/));
    const inter = makeIntermediate(root);
    assert.throws(() => prepareIssuer(inter.der, inter.keys.privateKey, [other.der]), isCode('invalid_argument', /did not issue/));
    assert.throws(() => prepareIssuer(Buffer.from('3000', 'hex'), root.keys.privateKey), isCode('invalid_argument', /malformed/));
  });
});
