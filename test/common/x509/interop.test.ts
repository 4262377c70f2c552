// Our DER output read back by independent implementations: OpenSSL (CLI and crypto.X509Certificate)
// and @peculiar/x509.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, ECDH, X509Certificate } from 'node:crypto';
import * as px from '@peculiar/x509';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { exportSpkiDer, generateKeyPair } from '../../../src/common/x509/keys.js';
import { mintX509Svid } from '../../../src/common/x509/leaf.js';
import { makeIntermediate, makeRoot, openssl, p384KeyPair, rsaKeyPair, tempDir, toPem, ed25519KeyPair, HOUR } from './fixtures.js';

const ID = 'spiffe://example.org/ns/prod/sa/api';

function opensslVerify(rootPem: string, leafPem: string, untrustedPem?: string): { ok: boolean; out: string } {
  const args = ['verify', '-x509_strict', '-CAfile', rootPem];
  if (untrustedPem) args.push('-untrusted', untrustedPem);
  args.push(leafPem);
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

describe('interop: openssl accepts our certificates', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('verifies a leaf issued by a root (EC P-256), as TLS client and server', () => {
    const root = makeRoot();
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, dnsNames: ['api.example.org'], ttlSeconds: HOUR });
    const rootPem = tmp.file('root.pem', toPem(root.der));
    const leafPem = tmp.file('leaf.pem', toPem(leaf.der));
    assert.deepEqual(opensslVerify(rootPem, leafPem), { ok: true, out: `${leafPem}: OK\n` });
    for (const purpose of ['sslclient', 'sslserver']) {
      const r = spawnSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootPem, leafPem], { encoding: 'utf8' });
      assert.equal(r.status, 0, purpose + r.stderr);
    }
    // The same leaf against an unrelated root fails, so the check above can fail.
    const otherPem = tmp.file('other.pem', toPem(makeRoot().der));
    assert.equal(opensslVerify(otherPem, leafPem).ok, false);
  });

  it('verifies root -> intermediate -> leaf with the intermediate untrusted', () => {
    const root = makeRoot();
    const inter = makeIntermediate(root);
    const leaf = mintX509Svid(inter.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    const rootPem = tmp.file('root2.pem', toPem(root.der));
    const interPem = tmp.file('inter2.pem', toPem(inter.der));
    const leafPem = tmp.file('leaf2.pem', toPem(leaf.der));
    assert.equal(opensslVerify(rootPem, leafPem, interPem).ok, true);
    assert.equal(opensslVerify(rootPem, leafPem).ok, false); // intermediate missing
  });

  it('verifies leaves from P-384, RSA and Ed25519 CAs, and RSA / P-384 / Ed25519 leaves', () => {
    for (const [name, caKeys] of [['p384', p384KeyPair()], ['rsa', rsaKeyPair()], ['ed25519', ed25519KeyPair()]] as const) {
      const root = makeRoot('example.org', caKeys);
      const rootPem = tmp.file(`${name}-root.pem`, toPem(root.der));
      for (const leafKeys of [generateKeyPair(), rsaKeyPair(), p384KeyPair(), ed25519KeyPair()]) {
        const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: leafKeys.publicKey, ttlSeconds: HOUR });
        const leafPem = tmp.file(`${name}-leaf.pem`, toPem(leaf.der));
        const r = opensslVerify(rootPem, leafPem);
        assert.equal(r.ok, true, `${name}: ${r.out}`);
      }
    }
  });

  it('verifies a leaf whose public key is a compressed EC point (SPKI DER input)', () => {
    const root = makeRoot();
    const spki = exportSpkiDer(generateKeyPair().publicKey);
    const point = ECDH.convertKey(spki.subarray(-65), 'prime256v1', undefined, undefined, 'compressed') as Buffer;
    const compressed = Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), point]);
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: compressed, ttlSeconds: HOUR });
    assert.equal(opensslVerify(tmp.file('c-root.pem', toPem(root.der)), tmp.file('c-leaf.pem', toPem(leaf.der))).ok, true);
    assert.ok(new X509Certificate(leaf.der).publicKey.equals(createPublicKey({ key: spki, format: 'der', type: 'spki' })));
  });

  it('`openssl x509 -text` shows the profile', () => {
    const root = makeRoot();
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, dnsNames: ['api.example.org'], ttlSeconds: HOUR });
    const text = openssl(['x509', '-in', tmp.file('text.pem', toPem(leaf.der)), '-noout', '-text']);
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.match(text, /URI:spiffe:\/\/example\.org\/ns\/prod\/sa\/api, DNS:api\.example\.org/);
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Agreement/);
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /Subject: C ?= ?US, O ?= ?Emblem, CN ?= ?api\.example\.org/);
    const caText = openssl(['x509', '-in', tmp.file('ca.pem', toPem(root.der)), '-noout', '-text']);
    assert.match(caText, /X509v3 Basic Constraints: critical\s+CA:TRUE/);
    assert.match(caText, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(caText, /URI:spiffe:\/\/example\.org\n/);
  });
});

describe('interop: crypto.X509Certificate and @peculiar/x509 read what readCertificate reads', () => {
  const root = makeRoot();
  const inter = makeIntermediate(root);
  const leafKeys = generateKeyPair();
  const leaf = mintX509Svid(inter.issuer, { spiffeId: ID, publicKey: leafKeys.publicKey, dnsNames: ['api.example.org', 'api'], ttlSeconds: HOUR });

  for (const [name, der, issuerDer] of [
    ['leaf', leaf.der, inter.der],
    ['intermediate', inter.der, root.der],
    ['root', root.der, root.der],
  ] as const) {
    it(`agrees on the ${name}`, async () => {
      const ours = readCertificate(der);
      const node = new X509Certificate(der);
      const pec = new px.X509Certificate(der);

      assert.equal(node.serialNumber.toLowerCase(), ours.serial);
      assert.equal(pec.serialNumber.toLowerCase(), ours.serial);
      assert.equal(Date.parse(node.validFrom) / 1000, ours.notBefore);
      assert.equal(Date.parse(node.validTo) / 1000, ours.notAfter);
      assert.equal(pec.notBefore.getTime() / 1000, ours.notBefore);
      assert.equal(pec.notAfter.getTime() / 1000, ours.notAfter);

      const nodeSans = (node.subjectAltName ?? '').split(', ');
      assert.deepEqual(nodeSans, [...ours.uris.map((u) => `URI:${u}`), ...ours.dnsNames.map((d) => `DNS:${d}`)]);
      const pecSans = pec.getExtension(px.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
      assert.deepEqual(pecSans, [...ours.uris.map((value) => ({ type: 'url', value })), ...ours.dnsNames.map((value) => ({ type: 'dns', value }))]);

      assert.equal(node.ca, ours.isCa);
      const bc = pec.getExtension(px.BasicConstraintsExtension);
      assert.equal(bc?.ca, ours.isCa);
      assert.equal(bc?.critical, true);

      const ku = pec.getExtension(px.KeyUsagesExtension);
      assert.equal(ku?.critical, ours.keyUsageCritical);
      for (const [flag, on] of Object.entries(ours.keyUsage ?? {})) {
        assert.equal(((ku?.usages ?? 0) & px.KeyUsageFlags[flag as keyof typeof px.KeyUsageFlags]) !== 0, on, flag);
      }

      assert.equal(pec.getExtension(px.SubjectKeyIdentifierExtension)?.keyId, ours.skid);
      assert.equal(pec.getExtension(px.AuthorityKeyIdentifierExtension)?.keyId, ours.akid);
      if (name === 'leaf') {
        assert.deepEqual(node.keyUsage, ours.extKeyUsage); // Node's "keyUsage" lists the EKU OIDs
        assert.deepEqual([...(pec.getExtension(px.ExtendedKeyUsageExtension)?.usages ?? [])], ours.extKeyUsage);
      }
      const issuer = new px.X509Certificate(issuerDer);
      assert.equal(await pec.verify({ publicKey: issuer, signatureOnly: true }), true);
      // @peculiar/x509 prints the serialNumber attribute by its OID.
      const pecName = (n: string): string => n.replace('2.5.4.5=', 'serialNumber=');
      assert.equal(pecName(pec.subject), ours.subject);
      assert.equal(pecName(pec.issuer), ours.issuer);
    });
  }
});
