// The SpiffeWorkloadAPI service (SPIFFE.md §5): request checks common to every RPC (security header,
// readiness, caller identity), the three bundle/SVID streams, the unary JWT RPCs, and
// Unimplemented for the optional WIT profile. Caller identification is injected so that the agent
// wires in its kernel-based attestation and tests can map callers by their own setup.
import {
  status,
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { AgentEntry, WorkloadIdentitySource } from '../cache/types.js';
import { EmblemError, errorMessage, permissionDenied, unavailable } from '../../common/errors.js';
import { toGrpcStatus } from '../../common/grpc/status.js';
import { workloadApiService } from '../../common/grpc/proto.js';
import type { Logger } from '../../common/logger.js';
import { checkSecurityHeader } from './security-header.js';
import { serveWatchStream, type StreamView } from './watch-stream.js';
import { buildJwtBundlesView, buildX509BundlesView, buildX509SvidView } from './responses.js';
import {
  checkJwtSvidRequest,
  checkValidateRequest,
  fetchJwtSvids,
  jwtSvidEntries,
  validateJwtSvidWith,
  type JwtSvidRequest,
  type ValidateJwtSvidRequest,
} from './jwt.js';

export type WorkloadCall = ServerWritableStream<unknown, unknown> | ServerUnaryCall<unknown, unknown>;

export interface CallerIdentity {
  /** The caller's selectors as "type:value" keys. */
  selectorKeys: ReadonlySet<string>;
  pid?: number;
}

/** Identifies the caller of a call; throws an EmblemError (e.g. permission_denied) to refuse it. */
export type IdentifyCaller = (call: WorkloadCall) => Promise<CallerIdentity>;

export type WorkloadApiMethod =
  | 'FetchX509SVID'
  | 'FetchX509Bundles'
  | 'FetchJWTSVID'
  | 'FetchJWTBundles'
  | 'ValidateJWTSVID'
  | 'FetchWITSVID'
  | 'FetchWITBundles';

/** Optional metric hooks; every one may be absent. */
export interface WorkloadApiMetrics {
  /** Once per call when it ends: unary replies, and streams ending with an error or a cancel. */
  callEnded?(method: WorkloadApiMethod, code: status): void;
  /** Open streams gauge: +1 when a stream starts, -1 when it ends. */
  streamsOpen?(method: WorkloadApiMethod, delta: 1 | -1): void;
  /** One per streamed message handed to the transport. */
  messageSent?(method: WorkloadApiMethod): void;
}

export interface WorkloadApiDeps {
  source: WorkloadIdentitySource;
  identify: IdentifyCaller;
  /** The agent's own trust domain name, e.g. "example.org". */
  trustDomain: string;
  logger: Logger;
  metrics?: WorkloadApiMetrics;
}

type StreamBuilder = (
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  trustDomain: string,
) => StreamView<unknown> | null;

/** How the open streams of a terminated source end (what a caller without entries is told). */
const NO_IDENTITY_ANY_MORE = permissionDenied('no identity issued');

/** Handlers for `workloadApiService().service`. */
export function createWorkloadApiHandlers(deps: WorkloadApiDeps): UntypedServiceImplementation {
  const { source, identify, trustDomain, logger, metrics } = deps;

  const checkCall = (call: WorkloadCall): void => {
    checkSecurityHeader(call.metadata);
    if (!source.ready()) throw unavailable('the agent is not ready to serve the Workload API yet');
  };

  // The caller's entries; a caller without any has no identity.
  const entitledEntries = (caller: CallerIdentity, call: WorkloadCall): AgentEntry[] => {
    const entries = source.entriesFor(caller.selectorKeys);
    if (entries.length === 0) {
      logger.debug({ pid: caller.pid, method: call.getPath() }, 'workload API caller has no identity');
      throw permissionDenied('no identity issued');
    }
    return entries;
  };

  const stream =
    (method: WorkloadApiMethod, build: StreamBuilder) =>
    (call: ServerWritableStream<unknown, unknown>): void => {
      metrics?.streamsOpen?.(method, 1);
      const onEnd = (code: status): void => {
        metrics?.streamsOpen?.(method, -1);
        metrics?.callEnded?.(method, code);
      };
      try {
        checkCall(call);
      } catch (err) {
        onEnd(endStream(call, err));
        return;
      }
      let caller: CallerIdentity | undefined;
      serveWatchStream({
        call,
        subscribe: (listener) => source.onChange(listener),
        build: async (known) => {
          // Identification (kernel and /proc lookups in the agent) runs on the first build and
          // before each message; a change that leaves this caller's view as it is costs none.
          const previous = caller;
          if (previous) {
            // A terminated source (banned or evicted agent) serves nobody: every open stream ends
            // at once, with one shared error and without identifying its caller again.
            if (!source.ready()) throw NO_IDENTITY_ANY_MORE;
            const view = viewOrError(() => build(source, entitledEntries(previous, call), trustDomain));
            if (view === null || (!(view instanceof Error) && view.fingerprint === known)) return view;
          }
          caller = await identify(call);
          return build(source, entitledEntries(caller, call), trustDomain);
        },
        logger,
        onEnd,
        onMessage: () => metrics?.messageSent?.(method),
      });
    };

  const unary =
    <Req, Res>(method: WorkloadApiMethod, run: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      run(call).then(
        (response) => {
          metrics?.callEnded?.(method, status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const st = toGrpcStatus(err);
          if (st.code === status.INTERNAL) logger.warn({ method, err: errorMessage(err) }, 'workload API call failed');
          metrics?.callEnded?.(method, st.code);
          callback(st);
        },
      );
    };

  const unimplemented =
    (method: WorkloadApiMethod) =>
    (call: ServerWritableStream<unknown, unknown>): void => {
      let code: status;
      try {
        checkSecurityHeader(call.metadata);
        code = endStream(call, new EmblemError('unimplemented', `${method} (WIT-SVID profile) is not supported`));
      } catch (err) {
        code = endStream(call, err);
      }
      metrics?.callEnded?.(method, code);
    };

  return {
    FetchX509SVID: stream('FetchX509SVID', buildX509SvidView),
    FetchX509Bundles: stream('FetchX509Bundles', buildX509BundlesView),
    FetchJWTBundles: stream('FetchJWTBundles', buildJwtBundlesView),
    FetchJWTSVID: unary('FetchJWTSVID', async (call: ServerUnaryCall<JwtSvidRequest, unknown>) => {
      checkSecurityHeader(call.metadata);
      const { audience, spiffeId } = checkJwtSvidRequest(call.request);
      checkCall(call);
      const entries = jwtSvidEntries(entitledEntries(await identify(call), call), spiffeId);
      return fetchJwtSvids(source, entries, audience);
    }),
    ValidateJWTSVID: unary('ValidateJWTSVID', async (call: ServerUnaryCall<ValidateJwtSvidRequest, unknown>) => {
      checkSecurityHeader(call.metadata);
      const { audience, token } = checkValidateRequest(call.request);
      checkCall(call);
      entitledEntries(await identify(call), call);
      return validateJwtSvidWith(source, trustDomain, token, audience);
    }),
    FetchWITSVID: unimplemented('FetchWITSVID'),
    FetchWITBundles: unimplemented('FetchWITBundles'),
  };
}

function viewOrError<T>(build: () => T): T | Error {
  try {
    return build();
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Ends a stream before any message with the error's status; returns the code. */
function endStream(call: ServerWritableStream<unknown, unknown>, err: unknown): status {
  const st = toGrpcStatus(err);
  call.emit('error', st);
  return st.code;
}

/** Registers the Workload API on a server. */
export function addWorkloadApi(server: Server, deps: WorkloadApiDeps): void {
  server.addService(workloadApiService().service, createWorkloadApiHandlers(deps));
}
