// Loads Emblem's .proto files at run time with @grpc/proto-loader. Field names keep the proto's
// snake_case, 64-bit integers become JS numbers, bytes become Buffers, and defaults are filled in.
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tolerateMalformedRequests } from './malformed-requests.js';

export const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../proto');

const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] };

const cache = new Map<string, PackageDefinition>();

export function loadDefinition(file: string): PackageDefinition {
  let def = cache.get(file);
  if (!def) {
    // Undecodable requests become INVALID_ARGUMENT on servers with the interceptor (malformed-requests.ts).
    def = tolerateMalformedRequests(loadSync(join(PROTO_DIR, file), LOADER_OPTIONS));
    cache.set(file, def);
  }
  return def;
}

function lookup(root: GrpcObject, path: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`service ${path} not found in proto definitions`);
  return node as ServiceClientConstructor;
}

/** The SPIFFE Workload API service (no proto package). */
export function workloadApiService(): ServiceClientConstructor {
  return lookup(loadPackageDefinition(loadDefinition('workload.proto')), 'SpiffeWorkloadAPI');
}

export function nodeService(): ServiceClientConstructor {
  return lookup(loadPackageDefinition(loadDefinition('emblem/server/v1/node.proto')), 'emblem.server.v1.Node');
}

export function adminService(): ServiceClientConstructor {
  return lookup(loadPackageDefinition(loadDefinition('emblem/server/v1/admin.proto')), 'emblem.server.v1.Admin');
}
