import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import { isEmblemError } from '../../src/common/errors.js';
import { JWT_LEEWAY_SECONDS, jwkThumbprintKid, mintJwtSvid, validateJwtSvid } from '../../src/common/jwt-svid.js';
import type { JwtAuthority } from '../../src/common/trust-bundle.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/web';
const NOW = 1_800_000_000_000; // ms
const NOW_S = NOW / 1000;

const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

const authority = (kid: string, key: KeyObject): JwtAuthority => {
  const { kty, crv, x, y, n, e } = key.export({ format: 'jwk' });
  const publicKey = kty === 'RSA' ? { kty, n, e } : { kty, crv, x, y };
  return { kid, publicKey };
};

const keys: JwtAuthority[] = [authority('k256', ec256.publicKey), authority('k384', ec384.publicKey), authority('krsa', rsa.publicKey)];
const keysFor = (td: string): JwtAuthority[] | undefined => (td === TD ? keys : undefined);

const b64url = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A token with any header and payload, correctly signed with ES256 by the P-256 key. */
function craft(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject = ec256.privateKey): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

const goodHeader = { alg: 'ES256', kid: 'k256', typ: 'JWT' };
const goodClaims = (): Record<string, unknown> => ({ sub: ID, aud: ['svc'], exp: NOW_S + 300, iat: NOW_S });

async function rejected(token: string, reason: string | RegExp, audience = 'svc'): Promise<void> {
  await assert.rejects(validateJwtSvid(token, audience, keysFor, NOW), (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), `not an invalid_argument EmblemError: ${String(err)}`);
    if (typeof reason === 'string') assert.ok(err.message.includes(reason), `message "${err.message}" lacks "${reason}"`);
    else assert.match(err.message, reason);
    if (token.length > 0) assert.ok(!err.message.includes(token), 'the token must not appear in the error');
    return true;
  });
}

describe('JWT-SVID', () => {
  describe('mint', () => {
    it('writes the header {alg, kid, typ} and the claims sub, aud, exp, iat', async () => {
      const m = await mintJwtSvid({ privateKey: ec256.privateKey, kid: 'k256', spiffeId: ID, audience: ['a'], ttlSeconds: 300, now: NOW + 999 });
      const [h, p] = m.token.split('.') as [string, string];
      assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url').toString()), { alg: 'ES256', kid: 'k256', typ: 'JWT' });
      assert.deepEqual(JSON.parse(Buffer.from(p, 'base64url').toString()), { sub: ID, aud: ['a'], exp: NOW_S + 300, iat: NOW_S });
      assert.equal(m.issuedAt, NOW_S);
      assert.equal(m.expiresAt, NOW_S + 300);
    });

    it('round-trips through validation for ES256, ES384, RS256 and PS256', async () => {
      const cases = [
        { alg: 'ES256', kid: 'k256', key: ec256.privateKey },
        { alg: 'ES384', kid: 'k384', key: ec384.privateKey },
        { alg: 'RS256', kid: 'krsa', key: rsa.privateKey },
        { alg: 'PS256', kid: 'krsa', key: rsa.privateKey },
      ] as const;
      for (const c of cases) {
        const m = await mintJwtSvid({ privateKey: c.key, kid: c.kid, spiffeId: ID, audience: ['a', 'b'], ttlSeconds: 60, now: NOW, alg: c.alg });
        const v = await validateJwtSvid(m.token, 'b', keysFor, NOW);
        assert.equal(v.spiffeId.uri, ID);
        assert.equal(v.expiresAt, NOW_S + 60);
        assert.deepEqual(v.claims.aud, ['a', 'b']);
      }
    });

    it('validates input', async () => {
      const base = { privateKey: ec256.privateKey, kid: 'k', spiffeId: ID, audience: ['a'], ttlSeconds: 60 };
      const bad = async (over: Record<string, unknown>, match: RegExp): Promise<void> => {
        await assert.rejects(mintJwtSvid({ ...base, ...over }), (e: unknown) => isEmblemError(e, 'invalid_argument') && match.test(e.message));
      };
      await bad({ spiffeId: 'spiffe://example.org' }, /no path/);
      await bad({ spiffeId: 'spiffe://example.org/a/' }, /must not end/);
      await bad({ audience: [] }, /at least one/);
      await bad({ audience: ['a', ''] }, /non-empty string/);
      await bad({ kid: '' }, /kid/);
      await bad({ ttlSeconds: 0 }, /ttlSeconds/);
      await bad({ privateKey: ec256.publicKey }, /private key/);
      await bad({ alg: 'HS256' }, /unsupported alg/);
      await bad({ alg: 'ES384' }, /cannot sign with ES384/);
    });
  });

  it('jwkThumbprintKid is the RFC 7638 thumbprint, the same from a KeyObject, its private key or a JWK', async () => {
    const jwk = ec256.publicKey.export({ format: 'jwk' });
    const expected = await calculateJwkThumbprint({ kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256');
    assert.equal(await jwkThumbprintKid(ec256.publicKey), expected);
    assert.equal(await jwkThumbprintKid(ec256.privateKey), expected);
    assert.equal(await jwkThumbprintKid({ ...jwk, use: 'jwt-svid', kid: 'x' }), expected);
    assert.match(expected, /^[A-Za-z0-9_-]{43}$/);
  });

  describe('validate', () => {
    it('accepts a hand-crafted token, typ JOSE or absent, aud as a string', async () => {
      for (const header of [goodHeader, { ...goodHeader, typ: 'JOSE' }, { alg: 'ES256', kid: 'k256' }]) {
        const v = await validateJwtSvid(craft(header, { ...goodClaims(), aud: 'svc' }), 'svc', keysFor, NOW);
        assert.equal(v.spiffeId.trustDomain, TD);
        assert.equal(v.claims.sub, ID);
      }
    });

    it('rejects alg none, HS256, EdDSA and ES256K before anything else', async () => {
      // Each token is otherwise broken too (no kid, bad sub), so only an early alg check names alg.
      const claims = { sub: 'not-an-id', aud: ['svc'] };
      await rejected(`${b64url({ alg: 'none' })}.${b64url(claims)}.`, 'unsupported alg "none"');
      await rejected(`${b64url({ alg: 'HS256' })}.${b64url(claims)}.${b64url('mac')}`, 'unsupported alg "HS256"');
      await rejected(`${b64url({ alg: 'EdDSA' })}.${b64url(claims)}.${b64url('sig')}`, 'unsupported alg "EdDSA"');
      await rejected(`${b64url({ alg: 'ES256K' })}.${b64url(claims)}.${b64url('sig')}`, 'unsupported alg "ES256K"');
      await rejected(`${b64url({ kid: 'k256' })}.${b64url(goodClaims())}.${b64url('sig')}`, 'token header has no alg');
    });

    it('rejects a token signed with HMAC using the public key as secret', async () => {
      const { createHmac } = await import('node:crypto');
      const input = `${b64url({ alg: 'HS256', kid: 'k256', typ: 'JWT' })}.${b64url(goodClaims())}`;
      const secret = ec256.publicKey.export({ format: 'pem', type: 'spki' });
      const token = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
      await rejected(token, 'unsupported alg "HS256"');
    });

    it('accepts only the compact serialization', async () => {
      const good = craft(goodHeader, goodClaims());
      await rejected(`${good}.extra`, 'compact JWS of 3 parts, got 4');
      await rejected(`${good}.a.b`, 'got 5');
      await rejected(good.split('.').slice(0, 2).join('.'), 'got 2');
      const [h, p, s] = good.split('.');
      await rejected(JSON.stringify({ protected: h, payload: p, signature: s }), 'JWS JSON serialization');
      await rejected(JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] }), 'JWS JSON serialization');
      await rejected('', 'empty');
      await rejected(`${h}!.${p}.${s}`, 'header is not base64url');
      await rejected(`${b64url('[1]')}.${p}.${s}`, 'header is not a JSON object');
    });

    it('rejects a typ other than JWT or JOSE', async () => {
      await rejected(craft({ ...goodHeader, typ: 'at+jwt' }, goodClaims()), 'typ "at+jwt"');
      await rejected(craft({ ...goodHeader, typ: 'jwt' }, goodClaims()), 'typ "jwt"');
    });

    it('rejects a missing or empty kid', async () => {
      await rejected(craft({ alg: 'ES256', typ: 'JWT' }, goodClaims()), 'token header has no kid');
      await rejected(craft({ ...goodHeader, kid: '' }, goodClaims()), 'kid is not a non-empty string');
    });

    it('rejects a missing or invalid sub', async () => {
      const { sub: _sub, ...noSub } = goodClaims();
      await rejected(craft(goodHeader, noSub), 'token has no sub claim');
      await rejected(craft(goodHeader, { ...goodClaims(), sub: 'spiffe://example.org/a/' }), 'sub is not a valid SPIFFE ID');
      await rejected(craft(goodHeader, { ...goodClaims(), sub: 'https://example.org/a' }), 'sub is not a valid SPIFFE ID');
      await rejected(craft(goodHeader, { ...goodClaims(), sub: 42 }), 'sub claim is not a string');
    });

    it('rejects a missing exp', async () => {
      const { exp: _exp, ...noExp } = goodClaims();
      await rejected(craft(goodHeader, noExp), 'token has no exp claim');
      await rejected(craft(goodHeader, { ...goodClaims(), exp: String(NOW_S + 300) }), 'exp claim is not a number');
    });

    it('rejects a trust domain with no JWT bundle', async () => {
      await rejected(craft(goodHeader, { ...goodClaims(), sub: 'spiffe://other.org/w' }), 'no JWT bundle for trust domain "other.org"');
    });

    it('rejects an unknown kid, and a kid whose key does not suit the alg', async () => {
      await rejected(craft({ ...goodHeader, kid: 'nope' }, goodClaims()), 'key "nope" not found in bundle');
      await rejected(craft({ ...goodHeader, kid: 'k384' }, goodClaims()), 'key "k384" (EC P-384) cannot verify alg "ES256"');
      await rejected(craft({ ...goodHeader, kid: 'krsa' }, goodClaims()), 'cannot verify alg "ES256"');
    });

    it('rejects a token signed by another key or tampered with', async () => {
      const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await rejected(craft(goodHeader, goodClaims(), other.privateKey), 'token signature is invalid');
      const good = craft(goodHeader, goodClaims());
      const [h, , s] = good.split('.');
      await rejected(`${h}.${b64url({ ...goodClaims(), sub: 'spiffe://example.org/admin' })}.${s}`, 'token signature is invalid');
      const sig = Buffer.from(s as string, 'base64url');
      sig[5] = (sig[5] as number) ^ 1;
      await rejected(`${h}.${good.split('.')[1]}.${sig.toString('base64url')}`, 'token signature is invalid');
    });

    it(`applies a ${JWT_LEEWAY_SECONDS} s leeway to exp`, async () => {
      await validateJwtSvid(craft(goodHeader, { ...goodClaims(), exp: NOW_S - JWT_LEEWAY_SECONDS + 1 }), 'svc', keysFor, NOW);
      await rejected(craft(goodHeader, { ...goodClaims(), exp: NOW_S - JWT_LEEWAY_SECONDS }), 'token has expired');
      await rejected(craft(goodHeader, { ...goodClaims(), exp: NOW_S - 3600 }), 'token has expired');
    });

    it('rejects nbf and iat in the future beyond the leeway', async () => {
      await validateJwtSvid(craft(goodHeader, { ...goodClaims(), nbf: NOW_S + JWT_LEEWAY_SECONDS }), 'svc', keysFor, NOW);
      await rejected(craft(goodHeader, { ...goodClaims(), nbf: NOW_S + JWT_LEEWAY_SECONDS + 1 }), 'not valid yet');
      await validateJwtSvid(craft(goodHeader, { ...goodClaims(), iat: NOW_S + JWT_LEEWAY_SECONDS }), 'svc', keysFor, NOW);
      await rejected(craft(goodHeader, { ...goodClaims(), iat: NOW_S + JWT_LEEWAY_SECONDS + 1 }), 'issued in the future');
      await rejected(craft(goodHeader, { ...goodClaims(), nbf: 'soon' }), 'nbf claim is not a number');
    });

    it('requires aud and the expected audience in it', async () => {
      const { aud: _aud, ...noAud } = goodClaims();
      await rejected(craft(goodHeader, noAud), 'token has no aud claim');
      await rejected(craft(goodHeader, { ...goodClaims(), aud: [] }), 'token has no audience');
      await rejected(craft(goodHeader, { ...goodClaims(), aud: [1] }), 'aud claim is malformed');
      await rejected(craft(goodHeader, goodClaims()), 'audience "other" not in token', 'other');
      await rejected(craft(goodHeader, { ...goodClaims(), aud: 'svc2' }), 'audience "svc" not in token');
      await assert.rejects(validateJwtSvid(craft(goodHeader, goodClaims()), '', keysFor, NOW), /expected audience is required/);
    });

    it('uses the current time by default', async () => {
      const m = await mintJwtSvid({ privateKey: ec256.privateKey, kid: 'k256', spiffeId: ID, audience: ['svc'], ttlSeconds: 60 });
      assert.equal((await validateJwtSvid(m.token, 'svc', keysFor)).spiffeId.uri, ID);
      const old = await mintJwtSvid({ privateKey: ec256.privateKey, kid: 'k256', spiffeId: ID, audience: ['svc'], ttlSeconds: 60, now: Date.now() - 3_600_000 });
      await assert.rejects(validateJwtSvid(old.token, 'svc', keysFor), /token has expired/);
    });
  });

  it('minted tokens verify with plain jose once `use` is stripped from the bundle keys', async () => {
    const m = await mintJwtSvid({ privateKey: ec256.privateKey, kid: 'k256', spiffeId: ID, audience: ['svc'], ttlSeconds: 60 });
    const jwks = createLocalJWKSet({ keys: [{ ...keys[0]?.publicKey, kid: 'k256' }] });
    const { payload } = await jwtVerify(m.token, jwks, { audience: 'svc' });
    assert.equal(payload.sub, ID);
  });
});
