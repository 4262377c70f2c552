// What the fuzzer sends to each method: valid seed messages (sent as they are, or mutated), and a
// "semantic" generator that fills well-formed messages with hostile values (invalid SPIFFE IDs,
// CSRs, JWTs, odd strings and integers). Methods without a spec get the generic treatment.
import { createHash } from 'node:crypto';
import { invalidCsrs, invalidJwts, invalidSpiffeIds, oddIntegers, oddStrings, protoField, type Rng } from './fuzz-gen.js';

export interface MethodSpec {
  /** Valid request objects (proto-loader shape). */
  seeds: (rng: Rng) => object[];
  /** A well-formed request with hostile field values. */
  semantic: (rng: Rng) => object | Buffer;
  /** Length-delimited field numbers of the request message, for the huge-field cases. */
  fields: number[];
  /** Bidi only: the messages after the first. */
  followUps?: (rng: Rng) => object[];
}

export interface FuzzContext {
  trustDomain: string;
  /** A genuine JWT-SVID (audience "fuzz") of `workloadId`. */
  realJwt: string;
  /** The SPIFFE ID the Workload API fuzzer (uid 0) is entitled to. */
  workloadId: string;
  /** An entry of the Node API fuzzer's agent, and one of another agent. */
  ownEntryId: string;
  otherEntryId: string;
  validCsr: Buffer;
  /** x509pop: a leaf chain of a CA the server trusts, and one of a CA it does not. */
  popChain: Buffer[];
  strangerChain: Buffer[];
  /** A valid, unused join token (the first case that sends it as is attests an agent). */
  joinToken: string;
  /** An agent and entries the admin fuzzer may ban, evict, update and delete. */
  fodderAgentId: string;
  fodderEntry: Record<string, unknown>;
  fodderDeleteEntryId: string;
  /** A PEM CA certificate usable as a federated bundle. */
  pemBundle: Buffer;
}

export interface Pools {
  ids: string[];
  csrs: Buffer[];
  jwts: string[];
  odd: string[];
}

export function makePools(rng: Rng, ctx: FuzzContext): Pools {
  return {
    ids: [...invalidSpiffeIds(ctx.trustDomain), ctx.workloadId, `spiffe://${ctx.trustDomain}/fuzz/x`],
    csrs: [...invalidCsrs(rng), ctx.validCsr],
    jwts: [...invalidJwts(rng, ctx.trustDomain, ctx.realJwt), ctx.realJwt],
    odd: oddStrings(rng),
  };
}

const listOf = <T>(rng: Rng, max: number, make: () => T): T[] => Array.from({ length: rng.int(max + 1) }, make);

/** Unknown fields only: still valid protobuf, which a server must simply ignore. */
function unknownFields(rng: Rng): Buffer {
  return Buffer.concat(listOf(rng, 4, () => protoField(rng.range(1, 30), rng.bytes(rng.range(0, 40)))));
}

const emptyRequest: MethodSpec = { seeds: () => [{}], semantic: unknownFields, fields: [1, 2, 3] };

export function workloadSpecs(ctx: FuzzContext, pools: Pools): Record<string, MethodSpec> {
  const audience = (rng: Rng): string[] =>
    rng.pick([[], [''], ['fuzz'], [rng.pick(pools.odd)], listOf(rng, 20, () => rng.pick(['a', 'b', 'fuzz', ...pools.odd.slice(0, 4)]))]);
  const id = (rng: Rng) => rng.pick(['', ...pools.ids]);
  return {
    FetchX509SVID: emptyRequest,
    FetchX509Bundles: emptyRequest,
    FetchJWTBundles: emptyRequest,
    FetchWITBundles: emptyRequest,
    FetchJWTSVID: {
      seeds: () => [{ audience: ['fuzz'], spiffe_id: '' }, { audience: ['a', 'b'], spiffe_id: ctx.workloadId }],
      semantic: (rng) => ({ audience: audience(rng), spiffe_id: id(rng) }),
      fields: [1, 2],
    },
    ValidateJWTSVID: {
      seeds: () => [{ audience: 'fuzz', svid: ctx.realJwt }],
      semantic: (rng) => ({ audience: rng.pick(['fuzz', '', ...pools.odd]), svid: rng.pick(pools.jwts) }),
      fields: [1, 2],
    },
    FetchWITSVID: { seeds: () => [{ spiffe_id: '' }], semantic: (rng) => ({ spiffe_id: id(rng) }), fields: [1] },
  };
}

export function nodeSpecs(ctx: FuzzContext, pools: Pools): Record<string, MethodSpec> {
  const csr = (rng: Rng) => rng.pick(pools.csrs);
  const entryId = (rng: Rng) => rng.pick([ctx.ownEntryId, ctx.otherEntryId, '', ...pools.odd, ...pools.ids]);
  const chain = (rng: Rng): Buffer[] =>
    rng.pick([
      [],
      ctx.popChain,
      ctx.strangerChain,
      [rng.bytes(rng.range(0, 300))],
      [...ctx.popChain, rng.bytes(40)],
      [rng.bytes(10), ...ctx.popChain],
      Array.from({ length: 12 }, () => ctx.popChain[0]!),
      [ctx.validCsr],
    ]);
  const params = (rng: Rng): object =>
    rng.chance(0.5)
      ? { join_token: rng.pick([rng.bytes(16).toString('hex'), '', ctx.joinToken.toUpperCase(), `${ctx.joinToken}0`, ...pools.odd]), csr: csr(rng) }
      : { x509pop: { cert_chain: chain(rng) }, csr: csr(rng) };
  return {
    AttestAgent: {
      seeds: () => [{ params: { join_token: ctx.joinToken, csr: ctx.validCsr } }, { params: { x509pop: { cert_chain: ctx.popChain }, csr: ctx.validCsr } }],
      semantic: (rng) => rng.pick([{ params: params(rng) }, { params: params(rng) }, { challenge_response: rng.bytes(rng.range(0, 200)) }, {}]),
      fields: [1, 2],
      followUps: (rng) =>
        listOf(rng, 2, () => rng.pick([{ challenge_response: rng.bytes(rng.range(0, 128)) }, { challenge_response: Buffer.alloc(0) }, { params: params(rng) }])),
    },
    RenewAgent: { seeds: () => [{ csr: ctx.validCsr }], semantic: (rng) => ({ csr: csr(rng) }), fields: [1] },
    SyncEntries: {
      seeds: () => [{ since_revision: 0, known_entries: [] }],
      semantic: (rng) => ({
        since_revision: rng.pick(oddIntegers),
        known_entries: listOf(rng, 20, () => ({ id: entryId(rng), revision: rng.pick(oddIntegers) })),
      }),
      fields: [2],
    },
    BatchNewX509SVID: {
      seeds: () => [{ params: [{ entry_id: ctx.ownEntryId, csr: ctx.validCsr }] }],
      semantic: (rng) => ({
        params: rng.chance(0.02)
          ? Array.from({ length: 1001 }, () => ({ entry_id: ctx.ownEntryId, csr: ctx.validCsr }))
          : listOf(rng, 8, () => ({ entry_id: entryId(rng), csr: csr(rng) })),
      }),
      fields: [1],
    },
    NewJWTSVID: {
      seeds: () => [{ entry_id: ctx.ownEntryId, audience: ['fuzz'] }],
      semantic: (rng) => ({ entry_id: entryId(rng), audience: rng.pick([[], [''], ['x'], [rng.pick(pools.odd)], listOf(rng, 30, () => rng.pick(pools.odd))]) }),
      fields: [1, 2],
    },
  };
}

const SELECTOR_MATCHES = ['SELECTOR_MATCH_SUPERSET', 'SELECTOR_MATCH_EXACT', 'SELECTOR_MATCH_SUBSET', 'SELECTOR_MATCH_ANY', 7, -1];

export function adminSpecs(ctx: FuzzContext, pools: Pools): Record<string, MethodSpec> {
  const td = ctx.trustDomain;
  const id = (rng: Rng) => rng.pick(pools.ids);
  const text = (rng: Rng) => rng.pick(pools.odd);
  const int = (rng: Rng) => rng.pick(oddIntegers);
  const selectors = (rng: Rng) =>
    listOf(rng, 4, () => ({ type: rng.pick(['unix', 'x509pop', 'k8s', '', ...pools.odd.slice(0, 6)]), value: rng.pick(['uid:1', 'gid:0', ...pools.odd]) }));
  const validEntry = (rng: Rng) => ({
    spiffe_id: `spiffe://${td}/fuzz/${rng.bytes(4).toString('hex')}`,
    parent_id: `spiffe://${td}/fuzz-parent`,
    selectors: [{ type: 'unix', value: `uid:${rng.range(1, 60000)}` }],
  });
  const entry = (rng: Rng) => ({
    id: rng.pick(['', ...pools.odd, String(ctx.fodderEntry['id'])]),
    spiffe_id: id(rng),
    parent_id: id(rng),
    selectors: selectors(rng),
    x509_svid_ttl: int(rng),
    jwt_svid_ttl: int(rng),
    dns_names: listOf(rng, 3, () => rng.pick(['a.example', '*.x', '-a.com', 'a..b', `${'l'.repeat(64)}.com`, ...pools.odd])),
    federates_with: listOf(rng, 2, () => rng.pick(['partner.test', td, 'UPPER.test', '', ...pools.odd])),
    admin: rng.chance(0.5),
    downstream: rng.chance(0.2),
    hint: text(rng),
    expires_at: int(rng),
    created_at: int(rng),
    revision: int(rng),
  });
  const page = (rng: Rng) => ({ page_size: int(rng), page_token: rng.pick([...pools.odd, rng.bytes(12).toString('base64url'), Buffer.from('entry/zzz').toString('base64url')]) });
  const byId = (seed: string): MethodSpec => ({ seeds: () => [{ id: seed }], semantic: (rng) => ({ id: rng.pick([...pools.odd, ...pools.ids, rng.bytes(20).toString('hex')]) }), fields: [1] });
  const fakeAuthorityId = createHash('sha1').update('no such authority').digest('hex');
  const bundleBytes = (rng: Rng): Buffer =>
    rng.pick([
      rng.bytes(rng.range(0, 500)),
      Buffer.from('{'),
      Buffer.from('{"keys": 5}'),
      Buffer.from('{"keys":[{"kty":"EC","use":"x509-svid","x5c":["AAAA"]}]}'),
      Buffer.from('{"keys":[{"kty":"EC","use":"jwt-svid","kid":"k","crv":"P-256","x":"AA","y":"AA"}],"spiffe_sequence":-1}'),
      Buffer.from('['.repeat(50_000)),
      Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
      ctx.pemBundle.subarray(0, ctx.pemBundle.length - 40),
      ctx.pemBundle,
    ]);
  return {
    CreateEntry: { seeds: (rng) => [validEntry(rng)], semantic: entry, fields: [1, 2, 3, 4, 7, 8, 11] },
    UpdateEntry: { seeds: (rng) => [{ ...ctx.fodderEntry, hint: `h${rng.int(1000)}` }], semantic: entry, fields: [1, 2, 3, 4, 7, 8, 11] },
    BatchCreateEntry: {
      seeds: (rng) => [{ entries: [validEntry(rng), validEntry(rng)] }],
      semantic: (rng) => ({ entries: rng.chance(0.02) ? Array.from({ length: 1001 }, () => validEntry(rng)) : listOf(rng, 5, () => entry(rng)) }),
      fields: [1],
    },
    DeleteEntry: byId(ctx.fodderDeleteEntryId),
    GetEntry: byId(String(ctx.fodderEntry['id'])),
    ListEntries: {
      seeds: () => [{}, { parent_id: `spiffe://${td}/fuzz-parent`, page_size: 5 }],
      semantic: (rng) => ({ spiffe_id: id(rng), parent_id: id(rng), selectors: selectors(rng), selector_match: rng.pick(SELECTOR_MATCHES), ...page(rng) }),
      fields: [1, 2, 3, 6],
    },
    CountEntries: {
      seeds: () => [{}],
      semantic: (rng) => ({ spiffe_id: id(rng), parent_id: id(rng), selectors: selectors(rng), selector_match: rng.pick(SELECTOR_MATCHES), ...page(rng) }),
      fields: [1, 2, 3, 6],
    },
    ListAgents: { seeds: () => [{}], semantic: page, fields: [2] },
    GetAgent: byId(ctx.fodderAgentId),
    EvictAgent: byId(ctx.fodderAgentId),
    BanAgent: byId(ctx.fodderAgentId),
    CreateJoinToken: { seeds: () => [{ ttl: 60 }], semantic: (rng) => ({ ttl: int(rng) }), fields: [] },
    GetBundle: emptyRequest,
    ListFederatedBundles: emptyRequest,
    ListAuthorities: emptyRequest,
    GetHealth: emptyRequest,
    SetFederatedBundle: {
      seeds: () => [{ trust_domain: 'partner.test', bundle: ctx.pemBundle }],
      semantic: (rng) => ({ trust_domain: rng.pick(['partner.test', td, 'UPPER.test', 'a..b', '', ...pools.odd]), bundle: bundleBytes(rng) }),
      fields: [1, 2],
    },
    DeleteFederatedBundle: {
      seeds: () => [{ trust_domain: 'partner.test' }],
      semantic: (rng) => ({ trust_domain: rng.pick(['partner.test', td, 'nope.test', ...pools.odd]) }),
      fields: [1],
    },
    PrepareAuthority: { seeds: () => [{ kind: 'jwt' }], semantic: (rng) => ({ kind: rng.pick(['x509 ', 'JWT', '', ...pools.odd]) }), fields: [1] },
    ActivateAuthority: byId(fakeAuthorityId),
    TaintAuthority: byId(fakeAuthorityId),
    RevokeAuthority: byId(fakeAuthorityId),
    ListSVIDs: {
      seeds: () => [{}, { spiffe_id: ctx.workloadId }],
      semantic: (rng) => ({ spiffe_id: id(rng), expiring_within: int(rng), agent_id: id(rng), ...page(rng) }),
      fields: [1, 3, 5],
    },
  };
}
