// emblem-agent assembly. Order matters:
// 1. open the store and restore the cache, then serve the Workload API at once: a restarted agent
//    serves its cached identities even while the server is unreachable;
// 2. attest (or reuse the stored agent SVID), then follow the server's push stream, pre-mint SVIDs
//    and keep the agent SVID renewed;
// 3. a ban or eviction stops serving and ends the process with a non-zero status.
import { Server } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { errorMessage, isEmblemError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { startObservabilityServer } from '../common/observability/http-endpoint.js';
import { runChecks, unixSocketAccepts, type CheckResult } from '../common/observability/health.js';
import { parseHostPort } from '../common/config-file.js';
import { parsePemCertificates, parsePemPrivateKey } from '../common/pem.js';
import { bundleFromTrustAnchorsFile } from '../common/workload-bundle.js';
import { readCertificate } from '../common/x509/cert-info.js';
import { agentPrivateKey } from './attestation/agent-svid.js';
import { bootstrapAgent } from './attestation/bootstrap.js';
import type { NodeAttestor } from './attestation/node-attestation.js';
import { restoreCache } from './cache/restore.js';
import { SvidCache } from './cache/svid-cache.js';
import { ServerClient } from './client/server-client.js';
import type { AgentConfig } from './config.js';
import { createAgentMetrics } from './metrics.js';
import { backoffDelayMs } from './rotation/rotation-time.js';
import { AgentSvidRotator } from './rotation/agent-svid-rotator.js';
import { KeyPool } from './rotation/key-pool.js';
import { SvidMinter } from './rotation/svid-minter.js';
import { openAgentStore, type StoredAgentSvid } from './storage/agent-store.js';
import { SyncClient } from './sync/sync-client.js';
import { attestCaller } from './workload/attest-caller.js';
import { addSelfTestService, selfTestPeerCredentials } from './workload/self-test.js';
import { listenWorkloadSocket, RECOMMENDED_WORKLOAD_SERVER_OPTIONS, type WorkloadSocket } from './workload/uds-listener.js';
import { addHealthAndReflection } from './workloadapi/health-reflection.js';
import { addWorkloadApi } from './workloadapi/service.js';
import { loggableId } from '../common/spiffe-id.js';

export interface RunningAgent {
  /** Resolves when the agent must stop for good (banned, evicted, unrecoverable SVID expiry). */
  readonly terminated: Promise<{ reason: string; message: string }>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

/** Errors that retrying cannot fix: the agent exits instead. */
const isFatal = (err: unknown): boolean =>
  isEmblemError(err, 'permission_denied') || isEmblemError(err, 'invalid_argument') || isEmblemError(err, 'failed_precondition');

function readAttestor(config: AgentConfig): NodeAttestor | undefined {
  if (config.joinToken) return { joinToken: config.joinToken };
  if (config.x509popCert && config.x509popKey) {
    return {
      x509pop: {
        certChain: parsePemCertificates(readFileSync(config.x509popCert, 'utf8')),
        privateKey: parsePemPrivateKey(readFileSync(config.x509popKey, 'utf8')),
      },
    };
  }
  return undefined;
}

export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  const store = await openAgentStore({ dataDir: config.dataDir, trustDomain: config.trustDomain });
  const closers: (() => Promise<void> | void)[] = [() => store.close()];
  let stopped = false;
  const closeAll = async () => {
    if (stopped) return;
    stopped = true;
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (err) {
        logger.warn({ reason: errorMessage(err) }, 'error during shutdown');
      }
    }
  };
  let terminate!: (t: { reason: string; message: string }) => void;
  const terminated = new Promise<{ reason: string; message: string }>((resolve) => (terminate = resolve));

  try {
    const snapshot = await store.load();
    const bootstrapAnchors = config.trustBundle
      ? bundleFromTrustAnchorsFile(config.trustDomain, readFileSync(config.trustBundle)).x509Authorities
      : undefined;
    const client = new ServerClient({
      serverAddress: config.serverAddress,
      trustDomain: config.trustDomain,
      bootstrapAnchors,
      insecureBootstrap: config.insecureBootstrap,
      logger,
    });
    closers.push(() => client.close());
    if (snapshot.bundle) client.setBundle(snapshot.bundle);

    const metrics = createAgentMetrics();
    const cache = new SvidCache({ mintJwtSvid: (entryId, audience) => client.newJwtSvid(entryId, audience), logger });
    restoreCache(cache, snapshot);

    // Serve the Workload API from the (restored) cache right away.
    let socket: WorkloadSocket | undefined;
    const grpcServer = new Server(RECOMMENDED_WORKLOAD_SERVER_OPTIONS);
    const attestorOptions = { discoverWorkloadPath: config.discoverWorkloadPath, workloadSizeLimit: config.workloadSizeLimit };
    addWorkloadApi(grpcServer, {
      source: cache,
      identify: async (call) => {
        const caller = await attestCaller(socket!, call, attestorOptions);
        return { selectorKeys: caller.selectorKeys, pid: caller.peer.pid };
      },
      trustDomain: config.trustDomain,
      logger: logger.child({ component: 'workload-api' }),
      metrics: metrics.workloadApiHooks(),
    });
    addHealthAndReflection(grpcServer, { source: cache, logger });
    addSelfTestService(grpcServer, { peerOf: (call) => socket?.peerOf(call) });
    socket = await listenWorkloadSocket(grpcServer, config.socket, { logger });
    closers.push(() => socket!.close());
    closers.push(() => grpcServer.forceShutdown());
    await selfTestPeerCredentials(config.socket);

    const stop = (reason: string, message: string) => {
      logger.error({ reason }, `agent stopping: ${message}`);
      cache.terminate();
      terminate({ reason, message });
    };

    // Attest, or reuse the stored agent SVID. While the server is unreachable, keep serving the
    // cache and retry with capped backoff.
    const attestor = readAttestor(config);
    let svid: StoredAgentSvid | undefined;
    for (let attempt = 0; !svid && !stopped; attempt++) {
      try {
        const result = await bootstrapAgent({ transport: client, store, stored: snapshot.agentSvid, attestor, logger });
        svid = result.svid;
        client.update({ agentSvid: { chain: svid.chain, privateKey: agentPrivateKey(svid) }, ...(result.bundle ? { bundle: result.bundle } : {}) });
        if (result.bundle) cache.setBundle(result.bundle);
      } catch (err) {
        if (isFatal(err)) throw err;
        const delay = backoffDelayMs(attempt, 500, 30_000);
        logger.warn({ reason: errorMessage(err), retryInMs: delay }, 'cannot attest yet; serving cached identities and retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    if (!svid) throw new Error('agent stopped before it attested');
    logger.info({ agentId: loggableId(svid.agentId) }, 'agent identity ready');

    // One ready key per authorised entry (up to 1,000), so that a re-key of everything after an
    // authority taint only waits for the server.
    const keyPool = new KeyPool({ target: () => cache.entryCount });
    closers.push(() => keyPool.stop());
    const minter = new SvidMinter({ cache, store, signer: client, keys: keyPool, logger, onMinted: (reason) => metrics.rotation('x509', reason) });
    minter.start(snapshot.identities);
    keyPool.refillWhenQuiet();
    closers.push(() => minter.stop());
    const rotator = new AgentSvidRotator({
      transport: client,
      store,
      ...(attestor && 'x509pop' in attestor ? { attestor } : {}),
      onRenewed: (renewed, bundle) => {
        svid = renewed;
        if (bundle) cache.setBundle(bundle);
        metrics.rotation('agent', 'expiring');
      },
      onTerminated: (reason, message) => stop(reason, message),
      logger,
    });
    rotator.start(svid);
    closers.push(() => rotator.stop());

    const sync = new SyncClient({
      trustDomain: config.trustDomain,
      transport: client,
      cache,
      store,
      initialRevision: snapshot.revision,
      onApplied: (u) => {
        minter.handleSync(u.result, u.taintedAuthorityIds);
        // The agent SVID is re-keyed too when its signing authority is tainted.
        const issuer = svid ? readCertificate(svid.chain[0]!).akid : undefined;
        if (issuer && u.taintedAuthorityIds.includes(issuer)) void rotator.renewNow();
      },
      onTerminated: (reason, message) => stop(reason, message),
      logger,
    });
    sync.start();
    closers.push(() => sync.stop());
    const agentSvidValid = (): CheckResult => {
      const notAfter = svid ? readCertificate(svid.chain[0]!).notAfter : 0;
      return notAfter > Date.now() / 1000 ? { ok: true, detail: `until ${new Date(notAfter * 1000).toISOString()}` } : { ok: false, detail: 'agent SVID expired' };
    };
    const ready = async () =>
      runChecks({
        attested: agentSvidValid,
        'server-or-cache': () => {
          if (sync.connected) return { ok: true, detail: 'sync stream up' };
          const now = Date.now() / 1000;
          const valid = cache.identities().filter((i) => i.notAfter > now).length;
          return valid > 0 ? { ok: true, detail: `server unreachable; ${valid} cached SVIDs valid` } : { ok: false, detail: 'server unreachable and no valid cached SVID' };
        },
        'workload-socket': () => unixSocketAccepts(config.socket),
        'not-terminated': () => (cache.isTerminated() ? { ok: false, detail: 'agent was banned or evicted' } : { ok: true, detail: '' }),
      });
    metrics.setIdentitySource(() => cache.identities().map((i) => ({ spiffeId: i.entry.spiffeId, notAfter: i.notAfter })));
    metrics.setBundleSequence(() => cache.bundle()?.sequence ?? 0);
    const syncGauge = setInterval(() => metrics.syncConnected(sync.connected), 1000);
    syncGauge.unref();
    closers.push(() => clearInterval(syncGauge));

    for (const [bind, withMetrics, withHealth] of [
      [config.metricsBind, true, config.metricsBind === config.healthBind],
      [config.healthBind !== config.metricsBind ? config.healthBind : undefined, false, true],
    ] as const) {
      if (!bind) continue;
      const { host, port } = parseHostPort(bind, 'listener');
      const endpoint = await startObservabilityServer({
        host,
        port,
        logger,
        ...(withMetrics ? { registry: metrics.registry } : {}),
        ...(withHealth
          ? { live: async () => runChecks({ 'not-terminated': () => ({ ok: !cache.isTerminated(), detail: '' }) }), ready }
          : {}),
      });
      closers.push(() => endpoint.close());
    }

    logger.info({ socket: config.socket, server: config.serverAddress, entries: cache.entries().length }, 'emblem-agent ready');
    return {
      terminated,
      ready: async () => (await ready()).every((c) => c.ok),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
