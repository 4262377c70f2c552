import assert from 'node:assert/strict';
import {
  SpiffeIdError,
  agentIdPrefix,
  isSpiffeId,
  parseSpiffeId,
  parseSpiffeIdInTrustDomain,
  parseTrustDomain,
  parseWorkloadSpiffeId,
  serverId,
  spiffeIdFromSegments,
  trustDomainId,
  type SpiffeIdRule,
} from '../../src/common/spiffe-id.js';

function rejects(input: string, rule: SpiffeIdRule, parse: (s: string) => unknown = parseSpiffeId): void {
  assert.throws(
    () => parse(input),
    (err: unknown) => {
      assert.ok(err instanceof SpiffeIdError, `expected SpiffeIdError for ${JSON.stringify(input)}`);
      assert.equal(err.rule, rule, `rule for ${JSON.stringify(input.slice(0, 60))}`);
      assert.equal(err.code, 'invalid_argument');
      return true;
    },
  );
}

describe('SPIFFE ID parsing (SPIFFE-ID.md §2)', () => {
  it('accepts a workload ID and splits trust domain and path', () => {
    assert.deepEqual(parseSpiffeId('spiffe://example.org/ns/web'), {
      trustDomain: 'example.org',
      path: '/ns/web',
      uri: 'spiffe://example.org/ns/web',
    });
  });

  it('accepts the trust domain ID (no path)', () => {
    assert.deepEqual(parseSpiffeId('spiffe://example.org'), { trustDomain: 'example.org', path: '', uri: 'spiffe://example.org' });
  });

  describe('scheme', () => {
    it('requires the lowercase spiffe:// prefix', () => {
      rejects('Spiffe://example.org/x', 'scheme');
      rejects('SPIFFE://example.org/x', 'scheme');
      rejects('spiffe:/example.org/x', 'scheme');
      rejects('spiffe:example.org/x', 'scheme');
      rejects('https://example.org/x', 'scheme');
      rejects('example.org/x', 'scheme');
    });
    it('rejects the empty string', () => rejects('', 'empty'));
  });

  describe('trust domain', () => {
    it('must be present', () => {
      rejects('spiffe://', 'trust_domain_missing');
      rejects('spiffe:///path', 'trust_domain_missing');
    });
    it('accepts a-z 0-9 . - _', () => {
      assert.equal(parseSpiffeId('spiffe://a-b_c.0-9.z/x').trustDomain, 'a-b_c.0-9.z');
    });
    it('rejects uppercase letters', () => rejects('spiffe://Example.org/x', 'trust_domain_char'));
    it('rejects characters outside the charset', () => {
      for (const c of ['!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', '~', ' ', 'é', '[', ']']) {
        rejects(`spiffe://ex${c}ample.org/x`, 'trust_domain_char');
      }
    });
    it('accepts 255 bytes and rejects 256', () => {
      const td255 = 'a'.repeat(255);
      assert.equal(parseSpiffeId(`spiffe://${td255}/x`).trustDomain, td255);
      assert.equal(parseTrustDomain(td255), td255);
      rejects(`spiffe://${'a'.repeat(256)}/x`, 'trust_domain_length');
      rejects('a'.repeat(256), 'trust_domain_length', parseTrustDomain);
    });
    it('rejects a port', () => {
      rejects('spiffe://example.org:443/x', 'port');
      rejects('spiffe://example.org:/x', 'port');
    });
    it('rejects userinfo', () => {
      rejects('spiffe://user@example.org/x', 'userinfo');
      assert.throws(() => parseSpiffeId('spiffe://user:pw@example.org/x'), SpiffeIdError);
    });
    it('rejects percent-encoding', () => rejects('spiffe://ex%61mple.org/x', 'percent_encoding'));
    it('accepts an IPv4 address as trust domain', () => {
      assert.equal(parseSpiffeId('spiffe://192.168.1.10/x').trustDomain, '192.168.1.10');
    });
    it('rejects an IPv6 literal', () => {
      assert.throws(() => parseSpiffeId('spiffe://[::1]/x'), SpiffeIdError);
      assert.throws(() => parseSpiffeId('spiffe://[2001:db8::1]/x'), SpiffeIdError);
    });
  });

  describe('query and fragment', () => {
    it('rejects a query after the trust domain or the path', () => {
      rejects('spiffe://example.org?a=b', 'query');
      rejects('spiffe://example.org/x?a=b', 'query');
      rejects('spiffe://example.org/x?', 'query');
    });
    it('rejects a fragment after the trust domain or the path', () => {
      rejects('spiffe://example.org#frag', 'fragment');
      rejects('spiffe://example.org/x#frag', 'fragment');
      rejects('spiffe://example.org/x#', 'fragment');
    });
  });

  describe('path', () => {
    it('rejects percent-encoding', () => rejects('spiffe://example.org/a%20b', 'percent_encoding'));
    it('rejects empty segments', () => {
      rejects('spiffe://example.org//x', 'path_empty_segment');
      rejects('spiffe://example.org/a//b', 'path_empty_segment');
    });
    it('rejects . and .. segments', () => {
      for (const p of ['/.', '/..', '/a/.', '/a/..', '/./a', '/../a', '/a/./b', '/a/../b']) {
        rejects(`spiffe://example.org${p}`, 'path_dot_segment');
      }
    });
    it('accepts segments that merely contain dots', () => {
      for (const p of ['/.a', '/..a', '/...', '/a.', '/a..', '/a/.b/..c/...']) {
        assert.equal(parseSpiffeId(`spiffe://example.org${p}`).path, p);
      }
    });
    it('rejects a trailing slash', () => {
      rejects('spiffe://example.org/', 'path_trailing_slash');
      rejects('spiffe://example.org/a/', 'path_trailing_slash');
    });
    it('accepts a-z A-Z 0-9 . - _ and is case-sensitive', () => {
      const id = parseSpiffeId('spiffe://example.org/Ab-C_d.9/XYZ');
      assert.equal(id.path, '/Ab-C_d.9/XYZ');
      assert.notEqual(parseSpiffeId('spiffe://example.org/A').uri, parseSpiffeId('spiffe://example.org/a').uri);
    });
    it('rejects characters outside the path charset', () => {
      for (const c of ['!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', ':', '@', '~', ' ', 'é', '\\', '[']) {
        rejects(`spiffe://example.org/a${c}b`, 'path_char');
      }
    });
  });

  describe('length', () => {
    it('accepts a 2048-byte ID', () => {
      const prefix = 'spiffe://example.org/';
      const id = prefix + 'a'.repeat(2048 - prefix.length);
      assert.equal(Buffer.byteLength(id), 2048);
      assert.equal(parseSpiffeId(id).uri, id);
    });
    it('accepts a longer ID too (no upper limit is imposed)', () => {
      const id = 'spiffe://example.org/' + 'segment/'.repeat(1000) + 'end';
      assert.ok(id.length > 8000);
      assert.equal(parseSpiffeId(id).uri, id);
    });
  });

  describe('helpers', () => {
    it('isSpiffeId mirrors parseSpiffeId', () => {
      assert.equal(isSpiffeId('spiffe://example.org/a'), true);
      assert.equal(isSpiffeId('spiffe://example.org/'), false);
    });
    it('parseTrustDomain accepts a bare name or a spiffe:// ID', () => {
      assert.equal(parseTrustDomain('example.org'), 'example.org');
      assert.equal(parseTrustDomain('spiffe://example.org'), 'example.org');
      assert.equal(parseTrustDomain('spiffe://example.org/with/path'), 'example.org');
      rejects('', 'trust_domain_missing', parseTrustDomain);
      rejects('Example.org', 'trust_domain_char', parseTrustDomain);
      rejects('example.org:8080', 'port', parseTrustDomain);
      rejects('example.org/x', 'trust_domain_char', parseTrustDomain);
    });
    it('parseWorkloadSpiffeId requires a non-root path', () => {
      assert.equal(parseWorkloadSpiffeId('spiffe://example.org/w').path, '/w');
      rejects('spiffe://example.org', 'root_path', parseWorkloadSpiffeId);
    });
    it('parseSpiffeIdInTrustDomain requires the given trust domain', () => {
      assert.equal(parseSpiffeIdInTrustDomain('spiffe://a.org/w', 'a.org').path, '/w');
      rejects('spiffe://b.org/w', 'wrong_trust_domain', (s) => parseSpiffeIdInTrustDomain(s, 'a.org'));
    });
    it('spiffeIdFromSegments builds and validates', () => {
      assert.equal(spiffeIdFromSegments('example.org', 'ns', 'web').uri, 'spiffe://example.org/ns/web');
      rejects('a b', 'path_char', (s) => spiffeIdFromSegments('example.org', s));
      rejects('', 'path_empty_segment', (s) => spiffeIdFromSegments('example.org', s, 'x'));
      rejects('..', 'path_dot_segment', (s) => spiffeIdFromSegments('example.org', s));
    });
    it('builds trust domain and component IDs that parse', () => {
      assert.equal(trustDomainId('example.org'), 'spiffe://example.org');
      assert.equal(parseSpiffeId(serverId('example.org')).path, '/emblem/server');
      assert.ok(agentIdPrefix('example.org').startsWith('spiffe://example.org/'));
      assert.equal(parseSpiffeId(agentIdPrefix('example.org') + 'join_token/abc').trustDomain, 'example.org');
    });
  });
});
