import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import {
  decodeBundleMap,
  decodeSpiffeBundle,
  encodeBundleMap,
  encodeSpiffeBundle,
  findDuplicateMembers,
} from '../../src/common/bundle-json.js';
import { isEmblemError } from '../../src/common/errors.js';
import type { JwtAuthority, TrustBundle } from '../../src/common/trust-bundle.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
type CaKeys = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];

async function makeCaDer(cn: string, rsa = false): Promise<Buffer> {
  const alg = rsa
    ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
    : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as unknown as CaKeys;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${cn}`,
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2035-01-01T00:00:00Z'),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  return Buffer.from(cert.rawData);
}

const jwtAuthority = (kid: string, type: 'ec' | 'rsa'): JwtAuthority => {
  const pair = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { kty, crv, x, y, n, e } = pair.publicKey.export({ format: 'jwk' });
  return { kid, publicKey: kty === 'RSA' ? { kty, n, e } : { kty, crv, x, y } };
};

const invalid = (fn: () => unknown, match: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), String(err));
    assert.match(err.message, match);
    return true;
  });
};

type Json = Record<string, unknown>;

describe('SPIFFE bundle JSON', () => {
  let ecCa: Buffer;
  let rsaCa: Buffer;
  let otherCa: Buffer;
  let bundle: TrustBundle;
  let jwtEc: JwtAuthority;

  before(async () => {
    [ecCa, rsaCa, otherCa] = await Promise.all([makeCaDer('ec'), makeCaDer('rsa', true), makeCaDer('other')]);
    jwtEc = jwtAuthority('kid-ec', 'ec');
    bundle = {
      trustDomain: 'example.org',
      x509Authorities: [ecCa, rsaCa],
      jwtAuthorities: [jwtEc, jwtAuthority('kid-rsa', 'rsa')],
      sequence: 7,
      refreshHint: 300,
    };
  });

  const entry = (extra: Json = {}): Json => ({ kty: 'EC', use: 'x509-svid', x5c: [ecCa.toString('base64')], ...extra });
  const decode = (obj: unknown): TrustBundle => decodeSpiffeBundle('example.org', JSON.stringify(obj));

  it('round-trips encode then decode', () => {
    assert.deepEqual(decodeSpiffeBundle('example.org', encodeSpiffeBundle(bundle)), bundle);
    assert.deepEqual(decodeSpiffeBundle('example.org', Buffer.from(encodeSpiffeBundle(bundle))), bundle);
    const noHint: TrustBundle = { ...bundle, refreshHint: undefined };
    delete noHint.refreshHint;
    assert.deepEqual(decodeSpiffeBundle('example.org', encodeSpiffeBundle(noHint)), noHint);
  });

  it('writes the go-spiffe / SPIRE shape: x509-svid entries with x5c and no kid, jwt-svid entries with kid', () => {
    const obj = JSON.parse(encodeSpiffeBundle(bundle)) as { keys: Json[]; spiffe_sequence: number; spiffe_refresh_hint: number };
    assert.equal(obj.spiffe_sequence, 7);
    assert.equal(obj.spiffe_refresh_hint, 300);
    assert.equal(obj.keys.length, 4);
    const [ecEntry, rsaEntry, jwtEntry, jwtRsaEntry] = obj.keys as [Json, Json, Json, Json];
    assert.deepEqual(Object.keys(ecEntry).sort(), ['crv', 'kty', 'use', 'x', 'x5c', 'y']);
    assert.equal(ecEntry.use, 'x509-svid');
    assert.equal(ecEntry.kty, 'EC');
    assert.equal(ecEntry.crv, 'P-256');
    assert.deepEqual(ecEntry.x5c, [ecCa.toString('base64')]);
    assert.deepEqual(Object.keys(rsaEntry).sort(), ['e', 'kty', 'n', 'use', 'x5c']);
    assert.equal(rsaEntry.e, 'AQAB');
    assert.deepEqual(jwtEntry, { ...jwtEc.publicKey, use: 'jwt-svid', kid: 'kid-ec' });
    assert.deepEqual(Object.keys(jwtRsaEntry).sort(), ['e', 'kid', 'kty', 'n', 'use']);
    const noHint = JSON.parse(encodeSpiffeBundle({ ...bundle, refreshHint: undefined })) as Json;
    assert.equal('spiffe_refresh_hint' in noHint, false);
  });

  it('never writes private key members', () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const withPrivate = { kid: 'k', publicKey: pair.privateKey.export({ format: 'jwk' }) };
    const json = encodeSpiffeBundle({ ...bundle, jwtAuthorities: [withPrivate] });
    assert.equal((JSON.parse(json) as { keys: Json[] }).keys.some((k) => 'd' in k), false);
  });

  describe('rejects malformed bundles', () => {
    it('not JSON, not an object', () => {
      invalid(() => decodeSpiffeBundle('example.org', '{"keys": ['), /not valid JSON/);
      invalid(() => decodeSpiffeBundle('example.org', ''), /not valid JSON/);
      for (const v of [[], null, 'keys', 3]) invalid(() => decode(v), /must be a JSON object/);
    });
    it('keys missing or not an array', () => {
      invalid(() => decode({}), /no "keys" member/);
      invalid(() => decode({ keys: {} }), /"keys" must be an array/);
      invalid(() => decode({ keys: null }), /"keys" must be an array/);
    });
    it('spiffe_sequence or spiffe_refresh_hint not a non-negative integer', () => {
      for (const v of [-1, 1.5, '3', null, true]) invalid(() => decode({ keys: [], spiffe_sequence: v }), /spiffe_sequence/);
      invalid(() => decodeSpiffeBundle('example.org', '{"keys":[],"spiffe_sequence":18446744073709551615}'), /spiffe_sequence/);
      for (const v of [-5, '300', 0.5]) invalid(() => decode({ keys: [], spiffe_refresh_hint: v }), /spiffe_refresh_hint/);
    });
    it('an x5c value that is not base64 DER of one certificate', () => {
      invalid(() => decode({ keys: [entry({ x5c: ['***'] })] }), /key 1 has an x5c value that is not base64/);
      invalid(() => decode({ keys: [entry({ x5c: [42] })] }), /not base64/);
      invalid(() => decode({ keys: [entry({ x5c: [''] })] }), /not base64/);
      invalid(() => decode({ keys: [entry({ x5c: [ecCa.toString('base64url')] })] }), /not base64|not a valid X.509/);
      invalid(() => decode({ keys: [entry({ x5c: [Buffer.from('hello world!').toString('base64')] })] }), /not DER/);
      const notCert = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05]);
      invalid(() => decode({ keys: [entry({ x5c: [notCert.toString('base64')] })] }), /not a valid X.509 certificate/);
      const trailing = Buffer.concat([ecCa, Buffer.from([0])]);
      invalid(() => decode({ keys: [entry({ x5c: [trailing.toString('base64')] })] }), /trailing bytes/);
      const twoCerts = Buffer.concat([ecCa, rsaCa]);
      invalid(() => decode({ keys: [entry({ x5c: [twoCerts.toString('base64')] })] }), /trailing bytes/);
    });
    it('a jwt-svid key that is not a valid public key, or a repeated kid', () => {
      const jwk = jwtEc.publicKey as Json;
      invalid(() => decode({ keys: [{ ...jwk, y: undefined, use: 'jwt-svid', kid: 'a' }] }), /no "y" parameter/);
      invalid(() => decode({ keys: [{ ...jwk, x: 'AAAA', use: 'jwt-svid', kid: 'a' }] }), /kid "a"\) is not a valid public key/);
      const dup = { ...jwk, use: 'jwt-svid', kid: 'same' };
      invalid(() => decode({ keys: [dup, dup] }), /kid "same" appears on more than one/);
    });
    it('an invalid trust domain', () => invalid(() => decodeSpiffeBundle('Example.org', '{"keys":[]}'), /uppercase/));
  });

  describe('ignores what the spec says to ignore', () => {
    it('unknown top-level members', () => {
      const b = decode({ keys: [entry()], spiffe_sequence: 2, something_new: { a: 1 }, keys_v2: [] });
      assert.deepEqual(b, { trustDomain: 'example.org', x509Authorities: [ecCa], jwtAuthorities: [], sequence: 2 });
    });
    it('entries with a missing or unknown use (use values are case-sensitive)', () => {
      const jwtEntry = { ...(jwtEc.publicKey as Json), kid: 'k' };
      for (const use of [undefined, 'X509-SVID', 'sig', 'enc', 'wit-svid', 42]) {
        const b = decode({ keys: [entry({ use }), { ...jwtEntry, use }] });
        assert.equal(b.x509Authorities.length + b.jwtAuthorities.length, 0, `use ${String(use)}`);
      }
    });
    it('entries with an unknown or missing kty, even with garbage beside it', () => {
      const b = decode({ keys: [entry({ kty: 'oct', x5c: ['***'] }), entry({ kty: undefined, x5c: ['***'] }), { kty: 'FOO', use: 'jwt-svid', kid: 'x' }] });
      assert.equal(b.x509Authorities.length + b.jwtAuthorities.length, 0);
    });
    it('non-object entries', () => {
      assert.deepEqual(decode({ keys: [null, 'x', 3, [], entry()] }).x509Authorities, [ecCa]);
    });
    it('x509-svid entries with no x5c; only the first of several x5c values is used', () => {
      assert.deepEqual(decode({ keys: [entry({ x5c: undefined }), entry({ x5c: [] }), entry({ x5c: 'not-an-array' })] }).x509Authorities, []);
      const b = decode({ keys: [entry({ x5c: [rsaCa.toString('base64'), otherCa.toString('base64'), '***'] })] });
      assert.deepEqual(b.x509Authorities, [rsaCa]);
    });
    it('a kid on an x509-svid entry, and repeated certificates', () => {
      assert.deepEqual(decode({ keys: [entry({ kid: 'should-not-be-here' }), entry()] }).x509Authorities, [ecCa]);
    });
    it('jwt-svid entries without a kid', () => {
      const jwk = jwtEc.publicKey as Json;
      const b = decode({ keys: [{ ...jwk, use: 'jwt-svid' }, { ...jwk, use: 'jwt-svid', kid: '' }, { ...jwk, use: 'jwt-svid', kid: 'ok' }] });
      assert.deepEqual(b.jwtAuthorities, [{ kid: 'ok', publicKey: jwtEc.publicKey }]);
    });
    it('private members in a jwt-svid key are dropped', () => {
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const b = decode({ keys: [{ ...pair.privateKey.export({ format: 'jwk' }), use: 'jwt-svid', kid: 'k' }] });
      assert.equal('d' in (b.jwtAuthorities[0]?.publicKey ?? {}), false);
    });
    it('an empty keys array gives an empty bundle', () => {
      assert.deepEqual(decode({ keys: [] }), { trustDomain: 'example.org', x509Authorities: [], jwtAuthorities: [], sequence: 0 });
    });
  });

  describe('bundle maps', () => {
    it('round-trips, keyed by trust domain name, without refresh hints', () => {
      const other: TrustBundle = { trustDomain: 'other.org', x509Authorities: [otherCa], jwtAuthorities: [], sequence: 1 };
      const json = encodeBundleMap([bundle, other]);
      const raw = JSON.parse(json) as { trust_domains: Record<string, Json> };
      assert.deepEqual(Object.keys(raw.trust_domains), ['example.org', 'other.org']);
      assert.equal('spiffe_refresh_hint' in (raw.trust_domains['example.org'] as Json), false);
      const map = decodeBundleMap(json);
      const { refreshHint: _hint, ...withoutHint } = bundle;
      assert.deepEqual(map.get('example.org'), withoutHint);
      assert.deepEqual(map.get('other.org'), other);
      assert.equal(decodeBundleMap('{"trust_domains":{}}').size, 0);
    });
    it('rejects duplicate trust domains, including ones JSON.parse would hide', () => {
      invalid(() => decodeBundleMap('{"trust_domains":{"a.org":{"keys":[]},"a.org":{"keys":[]}}}'), /trust domain "a.org" twice/);
      invalid(() => decodeBundleMap('{"trust_domains":{"a.org":{"keys":[]}, "\\u0061.org" :{"keys":[]}}}'), /trust domain "a.org" twice/);
      invalid(() => decodeBundleMap('{"trust_domains":{"a.org":{"keys":[]},"spiffe://a.org":{"keys":[]}}}'), /trust domain "a.org" twice/);
      invalid(() => decodeBundleMap('{"trust_domains":{},"trust_domains":{"a.org":{"keys":[]}}}'), /member "trust_domains" twice/);
      invalid(() => encodeBundleMap([bundle, bundle]), /appears twice/);
    });
    it('rejects a malformed map or entry', () => {
      invalid(() => decodeBundleMap('nope'), /not valid JSON/);
      invalid(() => decodeBundleMap('[]'), /must be a JSON object/);
      invalid(() => decodeBundleMap('{}'), /no "trust_domains"/);
      invalid(() => decodeBundleMap('{"trust_domains":[]}'), /must be an object/);
      invalid(() => decodeBundleMap('{"trust_domains":{"A.org":{"keys":[]}}}'), /uppercase/);
      invalid(() => decodeBundleMap('{"trust_domains":{"a.org":{}}}'), /entry "a.org" has no "keys"/);
    });
  });

  it('findDuplicateMembers is not fooled by strings, escapes or sibling objects', () => {
    assert.deepEqual(findDuplicateMembers('{"a":"}{\\"a\\":","b":[{"a":1},{"a":2}],"c":{"a":{"a":1}}}'), []);
    assert.deepEqual(findDuplicateMembers('{"a":"x","b":{"k":1,"k":2},"a":[]}'), [
      { path: ['b'], name: 'k' },
      { path: [], name: 'a' },
    ]);
    assert.deepEqual(findDuplicateMembers('[{"x":[{"y":1,"y":2}]}]'), [{ path: ['[]', 'x', '[]'], name: 'y' }]);
  });
});
