// The Admin service: entries (admin-entries.ts), agents, join tokens, bundles, authorities, the
// issuance ledger and health.
import type { Server } from '@grpc/grpc-js';
import { decodeSpiffeBundle, encodeSpiffeBundle } from '../../common/bundle-json.js';
import { errorMessage, invalidArgument, notFound, failedPrecondition } from '../../common/errors.js';
import { adminService } from '../../common/grpc/proto.js';
import type { Logger } from '../../common/logger.js';
import { parseCertificatesFlexible } from '../../common/pem.js';
import { parseTrustDomain } from '../../common/spiffe-id.js';
import type { TrustBundle } from '../../common/trust-bundle.js';
import { generateJoinToken } from '../attestation/join-token.js';
import { loggableId } from '../../common/spiffe-id.js';
import type { AgentRecord, AuthorityKind, AuthorityRecord, Datastore, SvidRecord } from '../datastore/types.js';
import type { StateMirror } from '../sync/state-mirror.js';
import { entryHandlers } from './admin-entries.js';
import { deleteAgentRecord, updateAgentRecord } from './agent-records.js';
import type { AdminGuard } from './admin-guard.js';
import type { AgentConnections } from './agent-connections.js';

export interface AuthorityAdmin {
  list(): AuthorityRecord[];
  prepare(kind: AuthorityKind): Promise<AuthorityRecord>;
  activate(id: string): Promise<AuthorityRecord>;
  taint(id: string): Promise<AuthorityRecord>;
  revoke(id: string): Promise<AuthorityRecord>;
}

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface AdminServiceDeps {
  trustDomain: string;
  datastore: Datastore;
  mirror: StateMirror;
  authorities: AuthorityAdmin;
  connections: AgentConnections;
  guard: AdminGuard;
  joinTokenTtl: number;
  health(): Promise<HealthCheck[]>;
  logger: Logger;
}

const agentToProto = (a: AgentRecord) => ({
  id: a.id,
  attestation_type: a.attestationType,
  selectors: a.selectors,
  svid_serial: a.svidSerial,
  svid_expires_at: a.svidExpiresAt,
  banned: a.banned,
  last_seen: a.lastSeen,
  created_at: a.createdAt,
  can_reattest: a.canReattest,
});

const authorityToProto = (a: AuthorityRecord) => ({
  id: a.id,
  kind: a.kind,
  status: a.status,
  not_before: a.notBefore,
  not_after: a.notAfter,
  certificate: a.certificate ?? Buffer.alloc(0),
  upstream_id: '',
});

const svidToProto = (s: SvidRecord) => ({
  serial: s.serial,
  spiffe_id: s.spiffeId,
  entry_id: s.entryId,
  agent_id: s.agentId,
  kind: s.kind,
  not_before: s.notBefore,
  not_after: s.notAfter,
  authority_id: s.authorityId,
  issued_at: s.issuedAt,
});

function parseFederatedBundle(trustDomain: string, bytes: Buffer): TrustBundle {
  const text = bytes.toString('utf8').trim();
  let bundle: TrustBundle;
  if (text.startsWith('{')) bundle = decodeSpiffeBundle(trustDomain, text);
  else {
    const certs = parseCertificatesFlexible(bytes);
    if (certs.length === 0) throw invalidArgument('bundle holds no certificate');
    bundle = { trustDomain, x509Authorities: certs, jwtAuthorities: [], sequence: 0 };
  }
  // A stored bundle is served as SPIFFE bundle JSON (to admins and to agents): one that cannot be
  // written so (e.g. a DSA key, which has no JWK form) would make every later listing fail.
  try {
    encodeSpiffeBundle(bundle);
  } catch (err) {
    throw invalidArgument(`bundle cannot be served as a SPIFFE bundle: ${errorMessage(err)}`, err);
  }
  return bundle;
}

export function addAdminService(server: Server, deps: AdminServiceDeps): void {
  const { guard, datastore, mirror } = deps;
  const log = deps.logger.child({ component: 'admin-api' });
  const audit = (action: string, fields: Record<string, unknown>) => log.info({ audit: action, ...fields }, `admin: ${action}`);
  const caughtUp = async () => mirror.waitForRevision(await datastore.currentRevision());

  const agentOrThrow = async (id: string) => {
    const agent = mirror.getAgent(id) ?? (await datastore.getAgent(id));
    if (!agent) throw notFound(`agent ${id} not found`);
    return agent;
  };

  server.addService(adminService().service, {
    ...entryHandlers({ trustDomain: deps.trustDomain, datastore, mirror, guard, audit }),

    ListAgents: guard.unary(async (req: { page_size: number; page_token: string }) => {
      const page = await datastore.listAgents({ pageSize: req.page_size || 1000, pageToken: req.page_token || undefined });
      return { agents: page.items.map(agentToProto), next_page_token: page.nextPageToken };
    }),
    GetAgent: guard.unary(async (req: { id: string }) => agentToProto(await agentOrThrow(req.id))),
    EvictAgent: guard.unary(async (req: { id: string }) => {
      await deleteAgentRecord(datastore, req.id);
      await caughtUp();
      // As for a ban: the agent's feed has sent AGENT_STATE_EVICTED; cutting the connections at
      // once would destroy that message before it leaves, so the cut comes a moment later.
      setTimeout(() => deps.connections.cut(req.id), 50).unref();
      audit('agent.evict', { agentId: loggableId(req.id) });
      return {};
    }),
    BanAgent: guard.unary(async (req: { id: string }) => {
      // On the stored record, in turn with renewals and attestations of the agent (agent-records.ts).
      await updateAgentRecord(datastore, req.id, (agent) => {
        if (!agent) throw notFound(`agent ${req.id} not found`);
        return { ...agent, banned: true };
      });
      await caughtUp();
      // The agent's feed has delivered AGENT_STATE_BANNED by now (it reacts to the mirror);
      // cutting the connections also ends any call it has in flight.
      setTimeout(() => deps.connections.cut(req.id), 50).unref();
      audit('agent.ban', { agentId: loggableId(req.id) });
      return {};
    }),

    CreateJoinToken: guard.unary(async (req: { ttl: number }) => {
      const ttl = req.ttl || deps.joinTokenTtl;
      const created = await generateJoinToken(datastore, deps.trustDomain, ttl);
      audit('token.create', { expiresAt: created.expiresAt });
      return { token: created.token, agent_id: created.agentId, expires_at: created.expiresAt };
    }),

    GetBundle: guard.unary(async () => {
      const bundle = mirror.bundle() ?? (await datastore.getBundle());
      if (!bundle) throw failedPrecondition('the trust bundle is not initialised yet');
      return { bundle: Buffer.from(encodeSpiffeBundle(bundle)), sequence: bundle.sequence };
    }),
    ListFederatedBundles: guard.unary(async () => {
      const bundles: Record<string, Buffer> = {};
      for (const [td, b] of mirror.federatedBundles()) bundles[td] = Buffer.from(encodeSpiffeBundle(b));
      return { bundles };
    }),
    SetFederatedBundle: guard.unary(async (req: { trust_domain: string; bundle: Buffer }) => {
      const td = parseTrustDomain(req.trust_domain);
      if (td === deps.trustDomain) throw invalidArgument('cannot set a federated bundle for the server\'s own trust domain');
      const bundle = parseFederatedBundle(td, req.bundle);
      const previous = mirror.federatedBundles().get(td);
      await datastore.setFederatedBundle({ ...bundle, sequence: Math.max(bundle.sequence, (previous?.sequence ?? 0) + 1) });
      await caughtUp();
      audit('bundle.federated.set', { trustDomain: td });
      return {};
    }),
    DeleteFederatedBundle: guard.unary(async (req: { trust_domain: string }) => {
      const td = parseTrustDomain(req.trust_domain);
      const users = [...mirror.allEntries()].filter((e) => e.federatesWith.includes(td)).length;
      if (users > 0) throw failedPrecondition(`${users} entries federate with ${td}; update them first`);
      await datastore.deleteFederatedBundle(td);
      await caughtUp();
      audit('bundle.federated.delete', { trustDomain: td });
      return {};
    }),

    ListAuthorities: guard.unary(async () => ({ authorities: deps.authorities.list().map(authorityToProto) })),
    PrepareAuthority: guard.unary(async (req: { kind: string }) => {
      if (req.kind !== 'x509' && req.kind !== 'jwt') throw invalidArgument('authority kind must be x509 or jwt');
      const a = await deps.authorities.prepare(req.kind);
      audit('authority.prepare', { authorityId: a.id, kind: a.kind });
      await caughtUp(); // GetBundle and the agents' feeds (both read the mirror) show it on return
      return authorityToProto(a);
    }),
    ActivateAuthority: guard.unary(async (req: { id: string }) => {
      const a = await deps.authorities.activate(req.id);
      audit('authority.activate', { authorityId: a.id });
      await caughtUp();
      return authorityToProto(a);
    }),
    TaintAuthority: guard.unary(async (req: { id: string }) => {
      const a = await deps.authorities.taint(req.id);
      audit('authority.taint', { authorityId: a.id });
      await caughtUp();
      return authorityToProto(a);
    }),
    RevokeAuthority: guard.unary(async (req: { id: string }) => {
      const a = await deps.authorities.revoke(req.id);
      audit('authority.revoke', { authorityId: a.id });
      await caughtUp();
      return authorityToProto(a);
    }),

    ListSVIDs: guard.unary(async (req: { spiffe_id: string; expiring_within: number; agent_id: string; page_size: number; page_token: string }) => {
      const now = Math.floor(Date.now() / 1000);
      if (req.expiring_within < 0) throw invalidArgument('expiring_within must not be negative');
      const page = await datastore.listSvids({
        spiffeId: req.spiffe_id || undefined,
        agentId: req.agent_id || undefined,
        notExpiredAt: req.expiring_within ? now : undefined,
        expiresBefore: req.expiring_within ? now + req.expiring_within : undefined,
        pageSize: req.page_size || 1000,
        pageToken: req.page_token || undefined,
      });
      return { svids: page.items.map(svidToProto), next_page_token: page.nextPageToken };
    }),

    GetHealth: guard.unary(async () => {
      const checks = await deps.health();
      return { ready: checks.every((c) => c.ok), checks };
    }),
  });
}
