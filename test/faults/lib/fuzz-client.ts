// A gRPC client that sends raw bytes as requests (serializer = identity), so the fuzzer can deliver
// malformed protobuf, and that reduces every call to one outcome: the final status code, or OK with
// the first response message for streams it then cancels.
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition, PackageDefinition } from '@grpc/proto-loader';

export type MethodKind = 'unary' | 'server_stream' | 'bidi';

export interface FuzzMethod {
  /** Short name, e.g. "FetchX509SVID". */
  name: string;
  /** Full path, e.g. "/SpiffeWorkloadAPI/FetchX509SVID". */
  path: string;
  kind: MethodKind;
  def: MethodDefinition<object, object>;
}

/** Every method of `serviceName` in a loaded proto definition. */
export function methodsOf(definition: PackageDefinition, serviceName: string): FuzzMethod[] {
  const service = definition[serviceName] as unknown as Record<string, MethodDefinition<object, object>> | undefined;
  if (!service) throw new Error(`service ${serviceName} is not in the definition`);
  return Object.entries(service).map(([name, def]) => {
    if (def.requestStream && !def.responseStream) throw new Error(`${name}: client streaming is not used by Emblem`);
    const kind: MethodKind = def.requestStream ? 'bidi' : def.responseStream ? 'server_stream' : 'unary';
    return { name, path: def.path, kind, def };
  });
}

export interface Outcome {
  code: grpc.status;
  details: string;
  /** Decoded response messages (unary: the response; streams: what arrived before the end or cancel). */
  responses: object[];
  ms: number;
  /** True when the client cancelled a stream after its first message. */
  cancelled: boolean;
}

const identity = (b: Buffer): Buffer => b;

/** A raw client on `target`; no receive limit, so a large legitimate answer is never our own error. */
export function rawClient(target: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): grpc.Client {
  return new grpc.Client(target, creds, { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, ...options });
}

function decodeOrKeep(method: FuzzMethod, raw: Buffer): object {
  try {
    return method.def.responseDeserialize(raw);
  } catch {
    return { undecodable: raw.length };
  }
}

/**
 * Sends `messages` (one for unary and server-streaming calls) and waits for the outcome. A server
 * stream that delivers a message counts as OK and is cancelled at once; a bidi call is half-closed
 * after the last message and runs to its status.
 */
export function callRaw(client: grpc.Client, method: FuzzMethod, messages: Buffer[], metadata: grpc.Metadata, timeoutMs = 10_000): Promise<Outcome> {
  const started = performance.now();
  const options = { deadline: Date.now() + timeoutMs };
  return new Promise((resolve) => {
    const responses: object[] = [];
    let settled = false;
    let cancelled = false;
    const settle = (code: grpc.status, details: string) => {
      if (settled) return;
      settled = true;
      resolve({ code, details, responses, ms: performance.now() - started, cancelled });
    };
    if (method.kind === 'unary') {
      client.makeUnaryRequest<Buffer, Buffer>(method.path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, options, (err, res) => {
        if (err) return settle(err.code, err.details);
        if (res) responses.push(decodeOrKeep(method, res));
        settle(grpc.status.OK, '');
      });
    } else if (method.kind === 'server_stream') {
      const call = client.makeServerStreamRequest<Buffer, Buffer>(method.path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, options);
      call.on('data', (raw: Buffer) => {
        responses.push(decodeOrKeep(method, raw));
        cancelled = !settled;
        settle(grpc.status.OK, '');
        call.cancel();
      });
      call.on('error', (err: grpc.ServiceError) => settle(err.code, err.details));
      call.on('status', (st: grpc.StatusObject) => settle(st.code, st.details));
    } else {
      const call = client.makeBidiStreamRequest<Buffer, Buffer>(method.path, identity, identity, metadata, options);
      call.on('data', (raw: Buffer) => responses.push(decodeOrKeep(method, raw)));
      call.on('error', (err: grpc.ServiceError) => settle(err.code, err.details));
      call.on('status', (st: grpc.StatusObject) => settle(st.code, st.details));
      for (const m of messages) call.write(m);
      call.end();
    }
  });
}

/** The answers a hostile request may get. Anything else (INTERNAL, UNKNOWN, a hang) is a finding. */
export const EXPECTED_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.UNIMPLEMENTED,
]);

export const codeName = (code: grpc.status): string => grpc.status[code] ?? String(code);
