import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { isEmblemError } from '../../../src/common/errors.js';
import { createIntermediateCa, createSelfSignedCa } from '../../../src/common/x509/ca.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { parseCertificate } from '../../../src/common/x509/cert-parse.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { OID } from '../../../src/common/x509/oids.js';
import { HOUR, makeRoot } from './fixtures.js';

const invalid = (pattern: RegExp) => (err: unknown) => isEmblemError(err, 'invalid_argument') && pattern.test((err as Error).message);

function checkCaProfile(der: Buffer, trustDomain: string): void {
  const info = readCertificate(der);
  const cert = parseCertificate(der);
  assert.equal(cert.version, 3);
  assert.equal(info.isCa, true);
  assert.equal(cert.extensions.find((e) => e.oid === OID.basicConstraints)?.critical, true);
  assert.equal(info.keyUsageCritical, true);
  assert.deepEqual(
    Object.entries(info.keyUsage ?? {}).filter(([, on]) => on).map(([k]) => k),
    ['keyCertSign', 'cRLSign'],
  );
  assert.deepEqual(info.uris, [`spiffe://${trustDomain}`]);
  assert.match(info.serial, /^[0-7][0-9a-f]{31}$/);
  assert.ok(info.skid);
  // serialNumber attribute = the certificate serial (decimal), which makes every CA subject unique.
  assert.ok(info.subject.includes(`serialNumber=${BigInt('0x' + info.serial).toString(10)}`), info.subject);
}

describe('createSelfSignedCa', () => {
  it('makes a self-signed CA SVID for the trust domain', () => {
    const now = Date.now();
    const keys = generateKeyPair();
    const der = createSelfSignedCa({ trustDomain: 'example.org', keyPair: keys, ttlSeconds: 24 * HOUR, now });
    checkCaProfile(der, 'example.org');
    const info = readCertificate(der);
    assert.equal(info.selfIssued, true);
    assert.equal(info.akid, undefined);
    assert.equal(info.subject, `C=US, O=Emblem, serialNumber=${BigInt('0x' + info.serial)}`);
    assert.equal(info.notBefore, Math.floor(now / 1000) - 10);
    assert.equal(info.notAfter, Math.floor(now / 1000) + 24 * HOUR);
    const x = new X509Certificate(der);
    assert.ok(x.verify(keys.publicKey));
    assert.equal(x.ca, true);
  });

  it('honours a custom subject and gives every CA a distinct subject', () => {
    const keys = generateKeyPair();
    const a = createSelfSignedCa({ trustDomain: 'example.org', keyPair: keys, ttlSeconds: 60, subject: { country: 'DE', organization: 'Acme', commonName: 'Acme CA' } });
    const b = createSelfSignedCa({ trustDomain: 'example.org', keyPair: keys, ttlSeconds: 60, subject: { country: 'DE', organization: 'Acme', commonName: 'Acme CA' } });
    assert.match(readCertificate(a).subject, /^C=DE, O=Acme, CN=Acme CA, serialNumber=\d+$/);
    assert.notDeepEqual(readCertificate(a).subjectDer, readCertificate(b).subjectDer);
  });

  it('rejects bad trust domains, TTLs, subjects and mismatched key pairs', () => {
    const keys = generateKeyPair();
    const base = { trustDomain: 'example.org', keyPair: keys, ttlSeconds: 60 };
    assert.throws(() => createSelfSignedCa({ ...base, trustDomain: 'Example.org' }), invalid(/uppercase/));
    assert.throws(() => createSelfSignedCa({ ...base, trustDomain: '' }), invalid(/missing/));
    assert.throws(() => createSelfSignedCa({ ...base, ttlSeconds: 0 }), invalid(/ttlSeconds/));
    assert.throws(() => createSelfSignedCa({ ...base, subject: { country: 'USA' } }), invalid(/country/));
    assert.throws(() => createSelfSignedCa({ ...base, subject: { commonName: 'x'.repeat(65) } }), invalid(/common name/));
    assert.throws(() => createSelfSignedCa({ ...base, keyPair: { privateKey: keys.privateKey, publicKey: generateKeyPair().publicKey } }), invalid(/does not match/));
  });
});

describe('createIntermediateCa', () => {
  it('is signed by the upstream with AKID = upstream SKID', () => {
    const root = makeRoot();
    const keys = generateKeyPair();
    const der = createIntermediateCa({ trustDomain: 'example.org', publicKey: keys.publicKey, upstreamCertificate: root.der, upstreamPrivateKey: root.keys.privateKey, ttlSeconds: HOUR });
    checkCaProfile(der, 'example.org');
    const info = readCertificate(der);
    assert.equal(info.selfIssued, false);
    assert.deepEqual(info.issuerDer, readCertificate(root.der).subjectDer);
    assert.equal(info.akid, readCertificate(root.der).skid);
    assert.notDeepEqual(info.subjectDer, readCertificate(root.der).subjectDer);
    const x = new X509Certificate(der);
    assert.ok(x.verify(root.keys.publicKey));
    assert.ok(x.checkIssued(new X509Certificate(root.der)));
  });

  it('caps notAfter at the upstream notAfter and backdates notBefore', () => {
    const now = Date.now();
    const root = makeRoot('example.org', generateKeyPair(), 300, now);
    const der = createIntermediateCa({ trustDomain: 'example.org', publicKey: generateKeyPair().publicKey, upstreamCertificate: root.der, upstreamPrivateKey: root.keys.privateKey, ttlSeconds: 24 * HOUR, now });
    const info = readCertificate(der);
    assert.equal(info.notAfter, readCertificate(root.der).notAfter);
    assert.equal(info.notBefore, Math.floor(now / 1000) - 10);
  });

  it('refuses an upstream that is not a CA or whose key does not match', () => {
    const root = makeRoot();
    const other = makeRoot();
    const base = { trustDomain: 'example.org', publicKey: generateKeyPair().publicKey, ttlSeconds: 60 };
    assert.throws(() => createIntermediateCa({ ...base, upstreamCertificate: root.der, upstreamPrivateKey: other.keys.privateKey }), invalid(/does not match/));
    assert.throws(() => createIntermediateCa({ ...base, upstreamCertificate: Buffer.from('3000', 'hex'), upstreamPrivateKey: root.keys.privateKey }), invalid(/malformed/));
  });
});
