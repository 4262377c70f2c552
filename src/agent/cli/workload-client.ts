// A small SPIFFE Workload API client (what `emblem-agent api …` uses). It speaks the standard
// protocol exactly like any other client: plaintext gRPC on the socket, the workload.spiffe.io
// header on every call.
import { credentials, Metadata, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import { workloadApiService } from '../../common/grpc/proto.js';
import { fromGrpcError } from '../../common/grpc/status.js';
import { grpcTarget, type EndpointAddress } from '../../common/endpoint-address.js';

// grpc-js generic client methods, called with .call(client, ...).
type GrpcMethod = (...args: unknown[]) => unknown;

export interface X509SvidMsg {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponseMsg {
  svids: X509SvidMsg[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface WorkloadClient {
  fetchX509(timeoutMs: number): Promise<X509SvidResponseMsg>;
  watchX509(onUpdate: (res: X509SvidResponseMsg) => void, onEnd: (err?: Error) => void): { cancel(): void };
  fetchJwt(audience: string[], spiffeId: string | undefined, timeoutMs: number): Promise<{ svids: { spiffe_id: string; svid: string; hint: string }[] }>;
  fetchJwtBundles(timeoutMs: number): Promise<{ bundles: Record<string, Buffer> }>;
  validateJwt(audience: string, svid: string, timeoutMs: number): Promise<{ spiffe_id: string; claims: unknown }>;
  close(): void;
}

export function workloadHeader(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

export function connectWorkloadApi(address: EndpointAddress): WorkloadClient {
  const Ctor = workloadApiService();
  const client: Client & Record<string, GrpcMethod> = new Ctor(grpcTarget(address), credentials.createInsecure()) as never;

  const firstOfStream = <T>(method: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const stream = client[method]!.call(client, {}, workloadHeader(), { deadline: Date.now() + timeoutMs }) as ClientReadableStream<T>;
      stream.once('data', (msg: T) => {
        resolve(msg);
        stream.cancel();
      });
      stream.on('error', (err: unknown) => reject(fromGrpcError(err)));
    });

  const unaryCall = <T>(method: string, request: object, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method]!.call(client, request, workloadHeader(), { deadline: Date.now() + timeoutMs }, (err: unknown, res: T) =>
        err ? reject(fromGrpcError(err)) : resolve(res),
      );
    });

  return {
    fetchX509: (timeoutMs) => firstOfStream('FetchX509SVID', timeoutMs),
    watchX509(onUpdate, onEnd) {
      const stream = client['FetchX509SVID']!.call(client, {}, workloadHeader()) as ClientReadableStream<X509SvidResponseMsg>;
      let ended = false;
      const end = (err?: Error) => {
        if (!ended) {
          ended = true;
          onEnd(err);
        }
      };
      stream.on('data', onUpdate);
      stream.on('error', (err: unknown) => end(fromGrpcError(err)));
      stream.on('end', () => end());
      return { cancel: () => stream.cancel() };
    },
    fetchJwt: (audience, spiffeId, timeoutMs) => unaryCall('FetchJWTSVID', { audience, spiffe_id: spiffeId ?? '' }, timeoutMs),
    fetchJwtBundles: (timeoutMs) => firstOfStream('FetchJWTBundles', timeoutMs),
    validateJwt: (audience, svid, timeoutMs) => unaryCall('ValidateJWTSVID', { audience, svid }, timeoutMs),
    close: () => client.close(),
  };
}
