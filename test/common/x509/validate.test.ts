import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as px from '@peculiar/x509';
import { isEmblemError } from '../../../src/common/errors.js';
import { contextTag, sequence, tlv } from '../../../src/common/x509/der.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { mintX509Svid } from '../../../src/common/x509/leaf.js';
import { OID } from '../../../src/common/x509/oids.js';
import {
  spiffeIdOfCertificate,
  verifyX509SvidChain,
  X509SvidError,
  type X509SvidFailure,
} from '../../../src/common/x509/validate.js';
import { flipByte, HOUR, makeIntermediate, makeRoot, oddCert, type OddCertOptions } from './fixtures.js';

const ID = 'spiffe://example.org/ns/default/sa/web';
const KU = px.KeyUsageFlags;

function fails(reason: X509SvidFailure, message: RegExp, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof X509SvidError, `expected X509SvidError, got ${String(err)}`);
    assert.equal(err.code, 'invalid_argument');
    assert.equal(err.reason, reason, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe('verifyX509SvidChain: valid chains', () => {
  const root = makeRoot();
  const bundles = (td: string) => (td === 'example.org' ? [root.der] : undefined);

  it('verifies a leaf minted by the root', () => {
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    const v = verifyX509SvidChain([leaf.der], bundles);
    assert.equal(v.spiffeId.uri, ID);
    assert.equal(v.spiffeId.trustDomain, 'example.org');
    assert.equal(v.notAfter, leaf.notAfter);
    assert.equal(v.pathNotAfter, leaf.notAfter);
    assert.equal(v.leaf.serialNumber.toLowerCase(), leaf.serial);
    assert.deepEqual(v.path, [leaf.der, root.der]);
  });

  it('verifies leaf + intermediate against the root, and against the intermediate alone', () => {
    const inter = makeIntermediate(root);
    const leaf = mintX509Svid(inter.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    const chain = [leaf.der, ...inter.issuer.intermediates];
    assert.deepEqual(verifyX509SvidChain(chain, bundles).path, [leaf.der, inter.der, root.der]);
    // An anchor may be the intermediate itself when it is in the bundle.
    assert.deepEqual(verifyX509SvidChain(chain, () => [inter.der]).path, [leaf.der, inter.der]);
  });

  it('builds the path through two intermediates given in any order, ignoring extras', () => {
    const i1 = makeIntermediate(root);
    const i2 = makeIntermediate(i1);
    const stray = makeIntermediate(makeRoot()).der;
    const leaf = mintX509Svid(i2.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    const v = verifyX509SvidChain([leaf.der, stray, i1.der, i2.der], bundles);
    assert.deepEqual(v.path, [leaf.der, i2.der, i1.der, root.der]);
  });

  it('picks the right anchor from a bundle holding several CAs', () => {
    const next = makeRoot();
    const leaf = mintX509Svid(next.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    assert.ok(verifyX509SvidChain([leaf.der], () => [root.der, next.der]));
  });

  it('accepts a well-formed leaf made by @peculiar/x509 (so the odd certificates below fail for their one defect)', async () => {
    const { der } = await oddCert({ issuer: root });
    assert.equal(verifyX509SvidChain([der], bundles).spiffeId.uri, 'spiffe://example.org/ns/odd');
  });
});

describe('verifyX509SvidChain: rejections', () => {
  const root = makeRoot();
  const bundles = (td: string) => (td === 'example.org' ? [root.der] : undefined);
  const mint = (issuer = root.issuer) => mintX509Svid(issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
  const odd = async (o: OddCertOptions) => (await oddCert({ issuer: root, ...o })).der;

  it('tampered signature or tampered content', () => {
    const leaf = mint();
    fails('bad_signature', /leaf signature does not verify/, () => verifyX509SvidChain([flipByte(leaf.der, -1)], bundles));
    const i = leaf.der.indexOf(Buffer.from('/ns/default'));
    fails('bad_signature', /signature does not verify/, () => verifyX509SvidChain([flipByte(leaf.der, i + 4)], bundles));
    const inter = makeIntermediate(root);
    const viaInter = mint(inter.issuer);
    fails('bad_signature', /intermediate 1 signature does not verify/, () => verifyX509SvidChain([viaInter.der, flipByte(inter.der, -1)], bundles));
  });

  it('wrong CA: a root of the same trust domain that is not in the bundle', () => {
    const other = makeRoot();
    fails('untrusted', /does not chain to the bundle for trust domain "example.org"/, () => verifyX509SvidChain([mint(other.issuer).der], bundles));
    const inter = makeIntermediate(root);
    fails('untrusted', /does not chain/, () => verifyX509SvidChain([mint(inter.issuer).der], bundles)); // intermediate not presented
  });

  it('expired and not yet valid, for the leaf, an intermediate and the anchor', async () => {
    const now = Date.now();
    const leaf = mint();
    fails('expired', /leaf expired at/, () => verifyX509SvidChain([leaf.der], bundles, now + 2 * HOUR * 1000));
    fails('not_yet_valid', /leaf is not yet valid/, () => verifyX509SvidChain([leaf.der], bundles, now - 60_000));
    const shortInter = makeIntermediate(root, 'example.org', 100);
    const longLeaf = await oddCert({ issuer: shortInter, notAfter: new Date(now + HOUR * 1000) });
    fails('expired', /intermediate 1 expired/, () => verifyX509SvidChain([longLeaf.der, shortInter.der], bundles, now + 200_000));
    const shortRoot = makeRoot('example.org', generateKeyPair(), 100);
    const leaf2 = await oddCert({ issuer: shortRoot, notAfter: new Date(now + HOUR * 1000) });
    fails('expired', /bundle certificate 0 of "example.org" expired/, () => verifyX509SvidChain([leaf2.der], () => [shortRoot.der], now + 200_000));
  });

  it('leaf with CA=true, keyCertSign, cRLSign, no digitalSignature or no keyUsage', async () => {
    fails('leaf_is_ca', /leaf is a CA/, () => verifyX509SvidChain([leafCa], bundles));
    fails('leaf_key_usage', /keyCertSign/, () => verifyX509SvidChain([leafCertSign], bundles));
    fails('leaf_key_usage', /cRLSign/, () => verifyX509SvidChain([leafCrlSign], bundles));
    fails('leaf_key_usage', /lacks digitalSignature/, () => verifyX509SvidChain([leafNoDigSig], bundles));
    fails('leaf_key_usage', /no keyUsage/, () => verifyX509SvidChain([leafNoKu], bundles));
  });
  let leafCa: Buffer, leafCertSign: Buffer, leafCrlSign: Buffer, leafNoDigSig: Buffer, leafNoKu: Buffer;
  before(async () => {
    leafCa = await odd({ ca: true, keyUsage: KU.digitalSignature });
    leafCertSign = await odd({ keyUsage: KU.digitalSignature | KU.keyCertSign });
    leafCrlSign = await odd({ keyUsage: KU.digitalSignature | KU.cRLSign });
    leafNoDigSig = await odd({ keyUsage: KU.keyEncipherment });
    leafNoKu = await odd({ omitKeyUsage: true });
  });

  it('URI SAN rules: two, none, root path, not a SPIFFE ID', async () => {
    fails('uri_san_count', /leaf has 2 URI SANs/, () => verifyX509SvidChain([twoUris], bundles));
    fails('uri_san_count', /leaf has 0 URI SANs/, () => verifyX509SvidChain([noUri], bundles));
    fails('root_path', /has no path/, () => verifyX509SvidChain([rootPath], bundles));
    fails('invalid_spiffe_id', /not a valid SPIFFE ID/, () => verifyX509SvidChain([notSpiffe], bundles));
  });
  let twoUris: Buffer, noUri: Buffer, rootPath: Buffer, notSpiffe: Buffer;
  before(async () => {
    twoUris = await odd({ uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    noUri = await odd({ uris: [], dnsNames: ['web.example.org'] });
    rootPath = await odd({ uris: ['spiffe://example.org'] });
    notSpiffe = await odd({ uris: ['https://example.org/a'] });
  });

  it('no bundle for the trust domain, and never a pooled or foreign bundle', () => {
    const leaf = mint();
    fails('no_bundle', /no bundle for trust domain "example.org"/, () => verifyX509SvidChain([leaf.der], () => undefined));
    fails('no_bundle', /no bundle for trust domain "example.org"/, () => verifyX509SvidChain([leaf.der], () => []));
    // The bundle of another trust domain is offered for example.org.
    const otherRoot = makeRoot('other.org');
    fails('untrusted', /"example.org"/, () => verifyX509SvidChain([leaf.der], () => [otherRoot.der]));
    // A leaf claiming other.org but signed by example.org's CA: other.org's bundle is used, not a pool.
    const foreign = mintX509Svid(root.issuer, { spiffeId: 'spiffe://other.org/x', publicKey: generateKeyPair().publicKey, ttlSeconds: HOUR });
    const both = (td: string) => ({ 'example.org': [root.der], 'other.org': [otherRoot.der] })[td];
    fails('untrusted', /trust domain "other.org"/, () => verifyX509SvidChain([foreign.der], both));
  });

  it('intermediates that are not CAs, lack keyCertSign, or break pathLen', async () => {
    const fakeInter = await oddCert({ issuer: root, ca: false, keyUsage: KU.keyCertSign, uris: ['spiffe://example.org'], subject: 'CN=fake' });
    const leaf1 = await oddCert({ issuer: fakeInter });
    fails('not_a_ca', /intermediate 1 is not a CA/, () => verifyX509SvidChain([leaf1.der, fakeInter.der], bundles));
    const noCertSign = await oddCert({ issuer: root, ca: true, keyUsage: KU.cRLSign, uris: ['spiffe://example.org'], subject: 'CN=nocertsign' });
    const leaf2 = await oddCert({ issuer: noCertSign });
    fails('not_a_ca', /intermediate 1 keyUsage lacks keyCertSign/, () => verifyX509SvidChain([leaf2.der, noCertSign.der], bundles));

    const tightRoot = await oddCert({ ca: true, pathLength: 0, uris: ['spiffe://example.org'], subject: 'CN=tight root' });
    const inter = await oddCert({ issuer: tightRoot, ca: true, uris: ['spiffe://example.org'], subject: 'CN=inter' });
    const leaf3 = await oddCert({ issuer: inter });
    fails('path_length', /allows 0 intermediate/, () => verifyX509SvidChain([leaf3.der, inter.der], () => [tightRoot.der]));
    const leaf4 = await oddCert({ issuer: tightRoot });
    assert.ok(verifyX509SvidChain([leaf4.der], () => [tightRoot.der]));
  });

  it('URI name constraints on a CA (X509-SVID §4.2) are enforced', async () => {
    const constraint = (permitted: string[], excluded: string[] = []) => {
      const subtrees = (names: string[]) => names.map((n) => sequence(tlv(contextTag(6, false), Buffer.from(n))));
      const parts = [];
      if (permitted.length) parts.push(tlv(contextTag(0, true), ...subtrees(permitted)));
      if (excluded.length) parts.push(tlv(contextTag(1, true), ...subtrees(excluded)));
      return new px.Extension(OID.nameConstraints, true, sequence(...parts));
    };
    const mk = async (ext: px.Extension) => {
      const ca = await oddCert({ ca: true, uris: ['spiffe://example.org'], subject: 'CN=constrained', extraExtensions: [ext] });
      return { ca, leaf: await oddCert({ issuer: ca }) };
    };
    const ok = await mk(constraint(['example.org']));
    assert.ok(verifyX509SvidChain([ok.leaf.der], () => [ok.ca.der]));
    const sub = await mk(constraint(['.example.org']));
    fails('name_constraints', /not permitted/, () => verifyX509SvidChain([sub.leaf.der], () => [sub.ca.der]));
    const other = await mk(constraint(['other.org']));
    fails('name_constraints', /URI name spiffe:\/\/example.org\/ns\/odd is not permitted/, () => verifyX509SvidChain([other.leaf.der], () => [other.ca.der]));
    const excluded = await mk(constraint([], ['example.org']));
    fails('name_constraints', /excluded/, () => verifyX509SvidChain([excluded.leaf.der], () => [excluded.ca.der]));
  });

  it('unknown critical extensions, malformed certificates, empty and overlong chains', async () => {
    const crit = await odd({ extraExtensions: [new px.Extension('1.3.6.1.4.1.99999.1', true, Buffer.from([5, 0]))] });
    fails('unhandled_critical_extension', /1\.3\.6\.1\.4\.1\.99999\.1/, () => verifyX509SvidChain([crit], bundles));
    const nonCrit = await odd({ extraExtensions: [new px.Extension('1.3.6.1.4.1.99999.1', false, Buffer.from([5, 0]))] });
    assert.ok(verifyX509SvidChain([nonCrit], bundles));
    fails('malformed', /leaf is malformed/, () => verifyX509SvidChain([Buffer.from('garbage')], bundles));
    const leaf = mint();
    fails('malformed', /intermediate 1 is malformed/, () => verifyX509SvidChain([leaf.der, leaf.der.subarray(1)], bundles));
    fails('malformed', /bundle certificate 0/, () => verifyX509SvidChain([leaf.der], () => [Buffer.from('3000', 'hex')]));
    fails('empty_chain', /empty/, () => verifyX509SvidChain([], bundles));
    fails('chain_too_long', /17 certificates/, () => verifyX509SvidChain(Array(17).fill(leaf.der), bundles));
  });

  it('throws only X509SvidError for mutated input', () => {
    const inter = makeIntermediate(root);
    const leaf = mint(inter.issuer);
    for (let n = 0; n < 300; n++) {
      const which = n % 2;
      const chain = [leaf.der, inter.der].map((d, i) => {
        if (i !== which) return d;
        const m = Buffer.from(d);
        m[Math.floor(Math.random() * m.length)] = Math.floor(Math.random() * 256);
        return m;
      });
      if (n % 50 === 0) chain.push(randomBytes(100));
      try {
        verifyX509SvidChain(chain, bundles);
      } catch (err) {
        assert.ok(err instanceof X509SvidError && isEmblemError(err, 'invalid_argument'), String(err));
      }
    }
  });
});

describe('spiffeIdOfCertificate', () => {
  it('reads the single URI SAN of leaves and CAs', async () => {
    const root = makeRoot();
    assert.equal(spiffeIdOfCertificate(root.der).uri, 'spiffe://example.org');
    const leaf = mintX509Svid(root.issuer, { spiffeId: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: 60 });
    assert.equal(spiffeIdOfCertificate(leaf.der).path, '/ns/default/sa/web');
    const two = await oddCert({ issuer: root, uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    fails('uri_san_count', /has 2 URI SANs/, () => spiffeIdOfCertificate(two.der));
  });
});
