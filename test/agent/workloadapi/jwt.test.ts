import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import type { KeyObject } from 'node:crypto';
import type { JwtSvidResponse } from '../../../src/agent/workloadapi/jwt.js';
import { validateJwtSvid } from '../../../src/common/jwt-svid.js';
import { FakeSource, TD, identifyByHeader, makeEntry, makePki, md, startHarness, unary, type Harness, type Pki } from './fixtures.js';

interface StructValue {
  kind: string;
  [k: string]: unknown;
}

/** Decodes a google.protobuf.Struct as proto-loader delivers it (oneofs: true). */
function fromStruct(s: { fields: Record<string, StructValue> }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields)) out[k] = fromValue(v);
  return out;
}

function fromValue(v: StructValue): unknown {
  switch (v.kind) {
    case 'listValue':
      return (v.listValue as { values: StructValue[] }).values.map(fromValue);
    case 'structValue':
      return fromStruct(v.structValue as { fields: Record<string, StructValue> });
    case 'nullValue':
      return null;
    default:
      return v[v.kind];
  }
}

async function expectCode(p: Promise<unknown>, code: status, details?: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: ServiceError) => {
    assert.equal(err.code, code, err.details);
    if (typeof details === 'string') assert.equal(err.details, details);
    else if (details) assert.match(err.details, details);
    return true;
  });
}

async function signToken(key: KeyObject, kid: string, claims: Record<string, unknown>): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, exp: now + 300, ...claims }).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(key);
}

describe('Workload API FetchJWTSVID and ValidateJWTSVID', () => {
  let pki: Pki;
  let other: Pki;
  let source: FakeSource;
  let h: Harness;
  const WEB = `spiffe://${TD}/web`;

  before(async () => {
    [pki, other] = await Promise.all([makePki(TD), makePki('other.org')]);
  });

  beforeEach(async () => {
    source = new FakeSource(pki);
    source.federated.set('other.org', other.bundle);
    source.add(makeEntry('/web', ['unix:uid:1000'], { id: 'a-web', hint: 'main' }));
    source.add(makeEntry('/web', ['unix:uid:1000'], { id: 'b-web-again' }));
    source.add(makeEntry('/db', ['unix:uid:1000'], { id: 'c-db', hint: 'main' }));
    source.add(makeEntry('/batch', ['unix:uid:1000'], { id: 'd-batch' }));
    const identify = identifyByHeader(
      new Map([
        ['web', ['unix:uid:1000']],
        ['nobody', ['unix:uid:1']],
      ]),
    );
    h = await startHarness({ source, identify });
  });

  afterEach(async () => {
    await h.close();
  });

  const fetchJwt = (req: unknown, caller = 'web'): Promise<JwtSvidResponse> => unary(h.client, 'FetchJWTSVID', req, md(caller));
  const validate = (req: unknown, caller = 'web'): Promise<{ spiffe_id: string; claims: { fields: Record<string, StructValue> } }> =>
    unary(h.client, 'ValidateJWTSVID', req, md(caller));

  it('FetchJWTSVID without spiffe_id: one token per entitled SPIFFE ID, first entry per ID, unique hints', async () => {
    const res = await fetchJwt({ audience: ['svc-a', 'svc-b'] });
    assert.deepEqual(
      res.svids.map((s) => [s.spiffe_id, s.hint]),
      [
        [WEB, 'main'],
        [`spiffe://${TD}/batch`, ''],
      ],
    );
    assert.deepEqual(
      source.jwtCalls.map((c) => c.entryId),
      ['a-web', 'd-batch'],
    );
    for (const s of res.svids) {
      const v = await validateJwtSvid(s.svid, 'svc-b', (td) => (td === TD ? pki.bundle.jwtAuthorities : undefined));
      assert.equal(v.spiffeId.uri, s.spiffe_id);
      assert.deepEqual(v.claims.aud, ['svc-a', 'svc-b']);
    }
  });

  it('FetchJWTSVID with spiffe_id returns only that identity', async () => {
    const res = await fetchJwt({ audience: ['svc'], spiffe_id: `spiffe://${TD}/db` });
    assert.deepEqual(
      res.svids.map((s) => s.spiffe_id),
      [`spiffe://${TD}/db`],
    );
  });

  it('FetchJWTSVID rejects bad requests and callers without the identity', async () => {
    await expectCode(fetchJwt({ audience: [] }), status.INVALID_ARGUMENT, 'audience must be specified');
    await expectCode(fetchJwt({}), status.INVALID_ARGUMENT, 'audience must be specified');
    await expectCode(fetchJwt({ audience: ['ok', ''] }), status.INVALID_ARGUMENT, 'audience must be specified');
    await expectCode(fetchJwt({ audience: ['svc'], spiffe_id: 'https://example.org/web' }), status.INVALID_ARGUMENT);
    await expectCode(fetchJwt({ audience: ['svc'], spiffe_id: `spiffe://${TD}/not-mine` }), status.PERMISSION_DENIED);
    await expectCode(fetchJwt({ audience: ['svc'] }, 'nobody'), status.PERMISSION_DENIED, 'no identity issued');
    await expectCode(fetchJwt({ audience: ['svc'] }, 'stranger'), status.PERMISSION_DENIED);
    assert.equal(source.jwtCalls.length, 0);
  });

  it('ValidateJWTSVID returns the SPIFFE ID and the claims as a Struct, aud always a list', async () => {
    const token = await signToken(pki.jwtKey, pki.kid, { sub: WEB, aud: 'svc', team: 'blue', n: [1, { x: null }] });
    const res = await validate({ audience: 'svc', svid: token });
    assert.equal(res.spiffe_id, WEB);
    const claims = fromStruct(res.claims);
    assert.deepEqual(claims.aud, ['svc']);
    assert.equal(claims.sub, WEB);
    assert.equal(typeof claims.exp, 'number');
    assert.equal(claims.team, 'blue');
    assert.deepEqual(claims.n, [1, { x: null }]);
  });

  it('ValidateJWTSVID accepts a federated trust domain token and filters its non-registered claims', async () => {
    const sub = 'spiffe://other.org/api';
    const token = await signToken(other.jwtKey, other.kid, { sub, aud: ['svc', 'more'], team: 'red', jti: 'j1' });
    const res = await validate({ audience: 'more', svid: token });
    assert.equal(res.spiffe_id, sub);
    assert.deepEqual(Object.keys(fromStruct(res.claims)).sort(), ['aud', 'exp', 'iat', 'jti', 'sub']);
  });

  it('ValidateJWTSVID rejects bad requests, invalid tokens and callers without identity', async () => {
    const good = (await fetchJwt({ audience: ['svc'], spiffe_id: WEB })).svids[0].svid;
    await expectCode(validate({ audience: '', svid: good }), status.INVALID_ARGUMENT, 'audience must be specified');
    await expectCode(validate({ audience: 'svc', svid: '' }), status.INVALID_ARGUMENT, 'svid must be specified');
    await expectCode(validate({ audience: 'other', svid: good }), status.INVALID_ARGUMENT, /^invalid JWT-SVID: /);
    await expectCode(validate({ audience: 'svc', svid: 'not.a.token' }), status.INVALID_ARGUMENT, /^invalid JWT-SVID: /);
    const unknownTd = await signToken(other.jwtKey, other.kid, { sub: 'spiffe://stranger.org/x', aud: 'svc' });
    await expectCode(validate({ audience: 'svc', svid: unknownTd }), status.INVALID_ARGUMENT, /^invalid JWT-SVID: /);
    const forged = await signToken(other.jwtKey, pki.kid, { sub: WEB, aud: 'svc' });
    await expectCode(validate({ audience: 'svc', svid: forged }), status.INVALID_ARGUMENT, /^invalid JWT-SVID: /);
    await expectCode(validate({ audience: 'svc', svid: good }, 'nobody'), status.PERMISSION_DENIED);
    const ok = await validate({ audience: 'svc', svid: good });
    assert.equal(ok.spiffe_id, WEB);
  });
});
