// emblem-server assembly: opens the datastore, starts the CA, the in-memory state mirror and the
// authorizer, then serves the agent-facing API over TLS and the admin API on the local socket.
import { Server } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseHostPort } from '../common/config-file.js';
import { errorMessage, failedPrecondition } from '../common/errors.js';
import { MALFORMED_REQUEST_INTERCEPTORS } from '../common/grpc/malformed-requests.js';
import type { Logger } from '../common/logger.js';
import { startObservabilityServer } from '../common/observability/http-endpoint.js';
import { parsePemCertificates, parsePemPrivateKey } from '../common/pem.js';
import { generateKeyPair } from '../common/x509/keys.js';
import { bindAdminSocket } from './admin-socket.js';
import { addAdminService, type HealthCheck } from './api/admin-service.js';
import { localAdminGuard, remoteAdminGuard } from './api/admin-guard.js';
import { createAgentConnections } from './api/agent-connections.js';
import { updateAgentRecord } from './api/agent-records.js';
import { addNodeService, type FeedPort } from './api/node-service.js';
import { createRateLimiter } from './attestation/rate-limit.js';
import { createEntryAuthorizer } from './authorization/authorized-entries.js';
import { createAuthorityManager, type UpstreamConfig } from './ca/authority-manager.js';
import { createCsrVerifyPool, type CsrVerifyPool } from './ca/csr-verify-pool.js';
import { diskKeyManager } from './ca/key-manager.js';
import { createSvidSigner } from './ca/svid-signer.js';
import type { ServerConfig } from './config.js';
import { instrumentDatastore } from './datastore/instrumented.js';
import { openDatastore } from './datastore/open.js';
import type { AgentRecord } from './datastore/types.js';
import { openAgentFeed } from './sync/agent-feed.js';
import { createServerMetrics } from './metrics.js';
import { createStateMirror } from './sync/state-mirror.js';
import { listenTls, type ServerTransport, type TlsIdentity } from './transport/tls-listener.js';

/** Seams for tests that must hold a request at a precise point; nothing else sets them. */
export interface ServerTestHooks {
  /** Wraps the CSR checks of BatchNewX509SVID (e.g. to hold a batch between authorisation and signing). */
  wrapCsrVerifier?: (verifier: Pick<CsrVerifyPool, 'verify'>) => Pick<CsrVerifyPool, 'verify'>;
}

export interface RunningServer {
  /** Port of the agent-facing API. */
  port: number;
  health(): Promise<HealthCheck[]>;
  close(): Promise<void>;
}

/** Lifetime of the server's own TLS SVID; it is renewed at half-life. */
const SERVER_SVID_TTL = 3600;
const HEALTH_TIMEOUT_MS = 2000;
const TOKEN_PRUNE_INTERVAL_MS = 10 * 60_000;

function readUpstream(config: ServerConfig): UpstreamConfig | undefined {
  if (!config.upstreamCert || !config.upstreamKey) return undefined;
  const certs = parsePemCertificates(readFileSync(config.upstreamCert, 'utf8'));
  return { certificate: certs[0]!, chain: certs.slice(1), privateKey: parsePemPrivateKey(readFileSync(config.upstreamKey, 'utf8')) };
}

function readX509PopCas(config: ServerConfig): Buffer[] {
  return config.x509popCaBundles.flatMap((path) => parsePemCertificates(readFileSync(path, 'utf8')));
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms).unref())]);

export async function startServer(config: ServerConfig, logger: Logger, hooks: ServerTestHooks = {}): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const metrics = createServerMetrics();
  const datastore = instrumentDatastore(await openDatastore({ kind: 'level', dataDir: config.dataDir }), metrics.registry);
  const closers: (() => Promise<void> | void)[] = [() => datastore.close()];
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (err) {
        logger.warn({ reason: errorMessage(err) }, 'error during shutdown');
      }
    }
  };
  try {
    const storedTd = await datastore.getMeta('trustDomain');
    if (storedTd && storedTd !== config.trustDomain) {
      throw failedPrecondition(`data directory ${config.dataDir} belongs to trust domain "${storedTd}", not "${config.trustDomain}"`);
    }
    if (!storedTd) await datastore.setMeta('trustDomain', config.trustDomain);

    const authorities = createAuthorityManager({
      datastore,
      keyManager: diskKeyManager(join(config.dataDir, 'keys')),
      trustDomain: config.trustDomain,
      caTtlSeconds: config.caTtl,
      upstream: readUpstream(config),
      rotationIntervalMs: config.rotationInterval * 1000,
      logger: logger.child({ component: 'ca' }),
    });
    await authorities.start();
    authorities.startTimer();
    closers.push(() => authorities.stop());

    const signer = createSvidSigner({
      authorities,
      datastore,
      trustDomain: config.trustDomain,
      defaults: { x509SvidTtl: config.x509SvidTtl, jwtSvidTtl: config.jwtSvidTtl, agentSvidTtl: config.agentSvidTtl },
      logger: logger.child({ component: 'signer' }),
    });

    // Closed after the listeners (closers run in reverse), so batches in flight finish first.
    const csrVerifier = createCsrVerifyPool({ workers: config.csrVerifyWorkers, logger });
    closers.push(() => csrVerifier.close());

    const mirror = createStateMirror(datastore, { logger: logger.child({ component: 'mirror' }), trustDomain: config.trustDomain });
    await mirror.start();
    closers.push(() => mirror.stop());
    const authz = createEntryAuthorizer(mirror, { logger });
    metrics.setGaugeSources({
      entries: () => mirror.entryCount(),
      bundleSequence: () => mirror.bundle()?.sequence ?? 0,
      agents: () => {
        let n = 0;
        for (const _ of mirror.allAgents()) n++;
        return n;
      },
      csrVerifyWorkers: () => csrVerifier.workers().length,
    });
    closers.push(() => authz.close());
    const syncState = async () => mirror.waitForRevision(await datastore.currentRevision());

    // The server's own TLS identity, renewed at half-life.
    const mintIdentity = async (): Promise<TlsIdentity & { notBefore: number; notAfter: number }> => {
      const keys = generateKeyPair();
      const svid = await signer.signServerSvid({ publicKey: keys.publicKey, ttlSeconds: SERVER_SVID_TTL });
      return { chain: svid.chain, privateKey: keys.privateKey, notBefore: svid.notBefore, notAfter: svid.notAfter };
    };
    let identity = await mintIdentity();

    let transport: ServerTransport | undefined;
    const connections = createAgentConnections(() => transport);
    const auth = {
      trustDomain: config.trustDomain,
      bundle: () => authorities.bundle(),
      agent: (id: string) => mirror.getAgent(id),
      loadAgent: (id: string) => datastore.getAgent(id),
      confirmRenewal: async (agent: AgentRecord) => {
        // Only drops the previous serial of the stored record, so a ban or eviction since the caller
        // read `agent` stands.
        await updateAgentRecord(datastore, agent.id, (stored) => {
          if (!stored || stored.svidSerial !== agent.svidSerial) return undefined;
          const { previousSvidSerial: _dropped, ...current } = stored;
          return current;
        });
        await syncState();
      },
      peerOf: (call: { getPeer(): string }) => transport?.peerOf(call),
    };
    // Push latency as seen by operators: from the mirror applying a change to the update being
    // handed to the agent's stream (the datastore commit to mirror step is sub-millisecond locally).
    let appliedAt = 0;
    mirror.onApplied(() => (appliedAt = performance.now()));
    const feed: FeedPort = {
      open(params, send, onClose) {
        let first = true;
        const handle = openAgentFeed(mirror, authz, params, (update) => {
          send(update);
          if (!first && appliedAt > 0) metrics.syncPushLatency((performance.now() - appliedAt) / 1000);
          first = false;
          if (update.agent_state === 'AGENT_STATE_BANNED') onClose('banned');
          else if (update.agent_state === 'AGENT_STATE_EVICTED') onClose('evicted');
        });
        return { close: () => handle.close() };
      },
    };

    const health = async (): Promise<HealthCheck[]> => {
      const checks: HealthCheck[] = [];
      try {
        await withTimeout(datastore.ping(), HEALTH_TIMEOUT_MS, 'datastore');
        checks.push({ name: 'datastore', ok: true, detail: '' });
      } catch (err) {
        checks.push({ name: 'datastore', ok: false, detail: errorMessage(err) });
      }
      try {
        const active = authorities.activeX509().authority;
        const ok = active.notAfter > Date.now() / 1000;
        checks.push({ name: 'x509-authority', ok, detail: ok ? active.id : `active authority ${active.id} has expired` });
      } catch (err) {
        checks.push({ name: 'x509-authority', ok: false, detail: errorMessage(err) });
      }
      checks.push({ name: 'agent-api', ok: transport !== undefined, detail: transport ? `port ${transport.port}` : 'not listening' });
      return checks;
    };

    const grpcServer = new Server({
      'grpc.max_concurrent_streams': 1000,
      'grpc.keepalive_time_ms': 60_000,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      interceptors: MALFORMED_REQUEST_INTERCEPTORS,
    });
    addNodeService(grpcServer, {
      ...auth,
      datastore,
      signer,
      x509popTrust: { caCertificates: readX509PopCas(config), pinnedSha256: new Set(config.x509popPinned) },
      agentSvidTtl: config.agentSvidTtl,
      rateLimiter: createRateLimiter(config.attestationRateLimit),
      remoteAddress: (call) => transport?.peerOf(call)?.remoteAddress ?? 'unknown',
      syncState,
      entry: (id) => mirror.getEntry(id),
      isAuthorized: (agentId, entryId) => authz.isAuthorized(agentId, entryId),
      feed,
      connections,
      csrVerifier: hooks.wrapCsrVerifier ? hooks.wrapCsrVerifier(csrVerifier) : csrVerifier,
      logger,
      metrics,
    });
    const adminDeps = {
      trustDomain: config.trustDomain,
      datastore,
      mirror,
      authorities,
      connections,
      joinTokenTtl: config.joinTokenTtl,
      health,
      logger,
    };
    addAdminService(grpcServer, { ...adminDeps, guard: remoteAdminGuard(auth, mirror) });
    transport = await listenTls(grpcServer, { host: config.bindHost, port: config.bindPort, identity, logger });
    closers.push(() => transport!.close());
    closers.push(() => new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())));

    const adminServer = new Server({ interceptors: MALFORMED_REQUEST_INTERCEPTORS });
    addAdminService(adminServer, { ...adminDeps, guard: localAdminGuard });
    await bindAdminSocket(adminServer, config.socket);
    closers.push(() => new Promise<void>((resolve) => adminServer.tryShutdown(() => resolve())));

    const identityTimer = setInterval(() => {
      const now = Date.now() / 1000;
      const stale = now > identity.notBefore + (identity.notAfter - identity.notBefore) / 2;
      const wrongCa = !authorities.bundle().x509Authorities.some((root) => identity.chain.length > 0 && new X509Certificate(identity.chain[identity.chain.length - 1]!).checkIssued(new X509Certificate(root)));
      if (!stale && !wrongCa) return;
      mintIdentity().then(
        (next) => {
          identity = next;
          transport?.setIdentity(next);
          logger.info({ notAfter: next.notAfter }, 'server SVID renewed');
        },
        (err: unknown) => logger.error({ reason: errorMessage(err) }, 'server SVID renewal failed'),
      );
    }, config.rotationInterval * 1000);
    identityTimer.unref();
    closers.push(() => clearInterval(identityTimer));

    // Expired join tokens are useless; drop them so the store does not grow with abandoned ones.
    const pruneTokens = () =>
      datastore.pruneJoinTokens(Math.floor(Date.now() / 1000)).then(
        (n) => n > 0 && logger.info({ pruned: n }, 'expired join tokens pruned'),
        (err: unknown) => logger.warn({ reason: errorMessage(err) }, 'join token pruning failed'),
      );
    void pruneTokens();
    const pruneTimer = setInterval(() => void pruneTokens(), TOKEN_PRUNE_INTERVAL_MS);
    pruneTimer.unref();
    closers.push(() => clearInterval(pruneTimer));

    await startObservability(config, metrics.registry, health, logger, closers);

    logger.info(
      { trustDomain: config.trustDomain, bind: `${config.bindHost}:${transport.port}`, socket: config.socket, dataDir: config.dataDir, entries: mirror.entryCount() },
      'emblem-server ready',
    );
    return { port: transport.port, health, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** /metrics on --metrics-bind, /live and /ready on --health-bind (one listener when they are equal). */
async function startObservability(
  config: ServerConfig,
  registry: Registry,
  health: () => Promise<HealthCheck[]>,
  logger: Logger,
  closers: (() => Promise<void> | void)[],
): Promise<void> {
  const live = async (): Promise<HealthCheck[]> => [{ name: 'process', ok: true, detail: '' }];
  const listeners = [
    { bind: config.metricsBind, withMetrics: true, withHealth: config.metricsBind === config.healthBind },
    { bind: config.healthBind !== config.metricsBind ? config.healthBind : undefined, withMetrics: false, withHealth: true },
  ];
  for (const { bind, withMetrics, withHealth } of listeners) {
    if (!bind) continue;
    const { host, port } = parseHostPort(bind, withMetrics ? 'metrics bind address' : 'health bind address');
    const endpoint = await startObservabilityServer({
      host,
      port,
      logger,
      ...(withMetrics ? { registry } : {}),
      ...(withHealth ? { live, ready: health } : {}),
    });
    closers.push(() => endpoint.close());
  }
}
