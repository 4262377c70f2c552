import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { encodeSpiffeBundle } from '../../src/common/bundle-json.js';
import { isEmblemError } from '../../src/common/errors.js';
import { mintJwtSvid } from '../../src/common/jwt-svid.js';
import { certificatesToPem } from '../../src/common/pem.js';
import type { JwtAuthority, TrustBundle } from '../../src/common/trust-bundle.js';
import {
  bundleFromTrustAnchorsFile,
  jwtBundleBytes,
  parseJwtBundleBytes,
  parseX509BundleBytes,
  x509BundleBytes,
} from '../../src/common/workload-bundle.js';
import { makeCaDer } from './x509/fixtures.js';

const invalid = (fn: () => unknown, match: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), String(err));
    assert.match(err.message, match);
    return true;
  });
};

describe('Workload API bundle forms', () => {
  const signer = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = signer.publicKey.export({ format: 'jwk' });
  const jwt: JwtAuthority = { kid: 'k1', publicKey: { kty, crv, x, y } };
  let ca1: Buffer;
  let ca2: Buffer;
  let bundle: TrustBundle;
  let tmp: string;

  before(async () => {
    [ca1, ca2] = await Promise.all([makeCaDer('one'), makeCaDer('two')]);
    bundle = { trustDomain: 'example.org', x509Authorities: [ca1, ca2], jwtAuthorities: [jwt], sequence: 3, refreshHint: 60 };
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-wb-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('x509BundleBytes is the concatenated DER of the CAs, and parses back', () => {
    const bytes = x509BundleBytes(bundle);
    assert.ok(bytes.equals(Buffer.concat([ca1, ca2])));
    assert.deepEqual(parseX509BundleBytes(bytes), [ca1, ca2]);
    assert.equal(x509BundleBytes({ ...bundle, x509Authorities: [] }).length, 0);
  });

  it('jwtBundleBytes is a plain JWKS of the JWT keys: kty, key parameters, kid; no use, no x5c, no spiffe_*', () => {
    const obj = JSON.parse(jwtBundleBytes(bundle).toString()) as Record<string, unknown>;
    assert.deepEqual(obj, { keys: [{ kty: 'EC', crv: 'P-256', x, y, kid: 'k1' }] });
    assert.deepEqual(JSON.parse(jwtBundleBytes({ ...bundle, jwtAuthorities: [] }).toString()), { keys: [] });
  });

  it('a JWT bundle from jwtBundleBytes verifies minted tokens with plain jose', async () => {
    const m = await mintJwtSvid({ privateKey: signer.privateKey, kid: 'k1', spiffeId: 'spiffe://example.org/w', audience: ['svc'], ttlSeconds: 60 });
    const jwks = createLocalJWKSet(JSON.parse(jwtBundleBytes(bundle).toString()));
    const { payload } = await jwtVerify(m.token, jwks, { audience: 'svc' });
    assert.equal(payload.sub, 'spiffe://example.org/w');
  });

  it('parseJwtBundleBytes accepts our form and SPIFFE-bundle keys with use, skipping other uses', () => {
    assert.deepEqual(parseJwtBundleBytes(jwtBundleBytes(bundle)), [jwt]);
    const spiffeForm = encodeSpiffeBundle(bundle);
    assert.deepEqual(parseJwtBundleBytes(spiffeForm), [jwt]);
    invalid(() => parseJwtBundleBytes('{"keys":[{"kty":"EC","crv":"P-256","x":"' + x + '","y":"' + y + '"}]}'), /key 1 has no kid/);
    invalid(() => parseJwtBundleBytes(JSON.stringify({ keys: [{ ...jwt.publicKey, kid: 'a' }, { ...jwt.publicKey, kid: 'a' }] })), /kid "a" twice/);
    invalid(() => parseJwtBundleBytes('{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"a"}]}'), /not a valid public key/);
    invalid(() => parseJwtBundleBytes('nope'), /not valid JSON/);
    invalid(() => parseJwtBundleBytes('{}'), /no "keys" array/);
  });

  describe('bundleFromTrustAnchorsFile', () => {
    it('reads SPIFFE bundle JSON from a file', () => {
      const file = path.join(tmp, 'bundle.json');
      fs.writeFileSync(file, '\n  ' + encodeSpiffeBundle(bundle));
      assert.deepEqual(bundleFromTrustAnchorsFile('example.org', fs.readFileSync(file)), bundle);
      assert.deepEqual(bundleFromTrustAnchorsFile('example.org', fs.readFileSync(file, 'utf8')), bundle);
    });

    it('reads PEM and DER certificate files', () => {
      const pemFile = path.join(tmp, 'ca.pem');
      fs.writeFileSync(pemFile, certificatesToPem([ca1, ca2]));
      const expected: TrustBundle = { trustDomain: 'example.org', x509Authorities: [ca1, ca2], jwtAuthorities: [], sequence: 0 };
      assert.deepEqual(bundleFromTrustAnchorsFile('example.org', fs.readFileSync(pemFile)), expected);
      assert.deepEqual(bundleFromTrustAnchorsFile('spiffe://example.org', fs.readFileSync(pemFile, 'utf8')), expected);
      const derFile = path.join(tmp, 'ca.der');
      fs.writeFileSync(derFile, Buffer.concat([ca1, ca2]));
      assert.deepEqual(bundleFromTrustAnchorsFile('example.org', fs.readFileSync(derFile)), expected);
    });

    it('rejects files with no X.509 authority, garbage, or a bad trust domain', () => {
      invalid(() => bundleFromTrustAnchorsFile('example.org', encodeSpiffeBundle({ ...bundle, x509Authorities: [] })), /no X.509 authorities/);
      invalid(() => bundleFromTrustAnchorsFile('example.org', 'garbage'), /not PEM/);
      invalid(() => bundleFromTrustAnchorsFile('example.org', '{"keys":'), /not valid JSON/);
      invalid(() => bundleFromTrustAnchorsFile('example.org', ''), /input is empty/);
      invalid(() => bundleFromTrustAnchorsFile('bad domain', certificatesToPem([ca1])), /outside/);
    });
  });
});
