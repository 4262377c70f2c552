import assert from 'node:assert/strict';
import { Metadata } from '@grpc/grpc-js';
import { toStruct } from '../../../src/agent/workloadapi/struct.js';
import { mapEntryName, normalizeFileDescriptors, summarizeFileDescriptor } from '../../../src/agent/workloadapi/file-descriptors.js';
import { federatedTrustDomains, withUniqueHints } from '../../../src/agent/workloadapi/responses.js';
import { checkSecurityHeader } from '../../../src/agent/workloadapi/security-header.js';
import { jwtSvidEntries } from '../../../src/agent/workloadapi/jwt.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { loadDefinition } from '../../../src/common/grpc/proto.js';
import { makeEntry } from './fixtures.js';

describe('Workload API helpers', () => {
  it('toStruct converts JSON values to the raw google.protobuf.Struct form', () => {
    assert.deepEqual(toStruct({ s: 'a', n: 1.5, b: false, z: null, u: undefined, l: ['x', 2], o: { k: true } }), {
      fields: {
        s: { stringValue: 'a' },
        n: { numberValue: 1.5 },
        b: { boolValue: false },
        z: { nullValue: 'NULL_VALUE' },
        l: { listValue: { values: [{ stringValue: 'x' }, { numberValue: 2 }] } },
        o: { structValue: { fields: { k: { boolValue: true } } } },
      },
    });
  });

  it('mapEntryName follows protoc', () => {
    assert.equal(mapEntryName('federated_bundles'), 'FederatedBundlesEntry');
    assert.equal(mapEntryName('fields'), 'FieldsEntry');
    assert.equal(mapEntryName('bundles'), 'BundlesEntry');
    assert.equal(mapEntryName('a_b2_c'), 'AB2CEntry');
  });

  it('normalizeFileDescriptors is idempotent and summarizeFileDescriptor rejects truncated input', () => {
    const protos = (loadDefinition('workload.proto').X509SVID as { fileDescriptorProtos: Buffer[] }).fileDescriptorProtos;
    const once = normalizeFileDescriptors(protos);
    const twice = normalizeFileDescriptors(once);
    assert.deepEqual(twice, once);
    const root = once.map(summarizeFileDescriptor).find((f) => f.services.includes('SpiffeWorkloadAPI'))!;
    assert.ok(root.symbols.includes('JWTBundlesResponse.BundlesEntry'));
    assert.ok(!root.symbols.includes('JWTBundlesResponse.Bundles'));
    assert.throws(() => summarizeFileDescriptor(root.bytes.subarray(0, root.bytes.length - 3)), /truncated/);
  });

  it('withUniqueHints keeps the earliest entry of each non-empty hint', () => {
    const a = makeEntry('/a', [], { hint: 'h' });
    const b = makeEntry('/b', [], { hint: '' });
    const c = makeEntry('/c', [], { hint: 'h' });
    const d = makeEntry('/d', [], { hint: '' });
    assert.deepEqual(withUniqueHints([a, b, c, d]), [a, b, d]);
  });

  it('federatedTrustDomains: union, sorted, accepts spiffe:// form, excludes the own trust domain', () => {
    const e1 = makeEntry('/a', [], { federatesWith: ['b.org', 'spiffe://a.org'] });
    const e2 = makeEntry('/b', [], { federatesWith: ['a.org', 'example.org'] });
    assert.deepEqual(federatedTrustDomains([e1, e2], 'example.org'), ['a.org', 'b.org']);
  });

  it('jwtSvidEntries picks the first entry per SPIFFE ID, or exactly the one asked for', () => {
    const a1 = makeEntry('/a', []);
    const a2 = makeEntry('/a', [], { hint: 'x' });
    const b = makeEntry('/b', []);
    assert.deepEqual(jwtSvidEntries([a1, a2, b], ''), [a1, b]);
    assert.deepEqual(jwtSvidEntries([a1, a2, b], b.spiffeId), [b]);
    assert.throws(() => jwtSvidEntries([a1], b.spiffeId), (e) => isEmblemError(e, 'permission_denied'));
  });

  it('checkSecurityHeader wants exactly one "true"', () => {
    const m = (...values: string[]): Metadata => {
      const md = new Metadata();
      for (const v of values) md.add('workload.spiffe.io', v);
      return md;
    };
    assert.doesNotThrow(() => checkSecurityHeader(m('true')));
    for (const bad of [m(), m('false'), m('TRUE'), m('true', 'true'), m(' true')]) {
      assert.throws(() => checkSecurityHeader(bad), (e) => isEmblemError(e, 'invalid_argument'));
    }
  });
});
