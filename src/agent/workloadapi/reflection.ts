// gRPC Server Reflection (grpc/grpc doc/server-reflection.md), v1 and v1alpha, answered from the
// file descriptors @grpc/proto-loader keeps in each package definition. Our own implementation
// because @grpc/reflection 1.0.4 names package-less services with a leading dot
// (".SpiffeWorkloadAPI") and cannot resolve "SpiffeWorkloadAPI", the Workload API's real full name.
import { status, type Server, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { loadDefinition } from '../../common/grpc/proto.js';
import { normalizeFileDescriptors, summarizeFileDescriptor, type FileDescriptorSummary } from './file-descriptors.js';

export const REFLECTION_SERVICES = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
] as const;

export interface ReflectionRequest {
  host?: string;
  message_request?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type: string; extension_number: number } | null;
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

export interface ReflectionResponse {
  valid_host: string;
  original_request: ReflectionRequest;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: Array<{ name: string }> };
  error_response?: { error_code: number; error_message: string };
}

export interface ReflectionIndex {
  services: string[];
  files: Map<string, FileDescriptorSummary>;
  symbolFile: Map<string, FileDescriptorSummary>;
  messages: Set<string>;
}

function isServiceDefinition(value: PackageDefinition[string]): boolean {
  return !('format' in value);
}

/** Indexes the services and files of the given definitions (services listed in name order). */
export function buildReflectionIndex(definitions: readonly PackageDefinition[]): ReflectionIndex {
  const services = new Set<string>();
  // proto-loader synthesizes one file per package and root; the same name from two definitions is
  // the same package (google.protobuf here), so the first copy is kept.
  const raw = new Map<string, Buffer>();
  for (const def of definitions) {
    for (const [name, value] of Object.entries(def)) {
      if (isServiceDefinition(value)) {
        services.add(name);
        continue;
      }
      for (const bytes of (value as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
        const name = summarizeFileDescriptor(Buffer.from(bytes)).name;
        if (!raw.has(name)) raw.set(name, Buffer.from(bytes));
      }
    }
  }
  const files = new Map<string, FileDescriptorSummary>();
  for (const bytes of normalizeFileDescriptors([...raw.values()])) {
    const file = summarizeFileDescriptor(bytes);
    files.set(file.name, file);
  }
  const symbolFile = new Map<string, FileDescriptorSummary>();
  const messages = new Set<string>();
  for (const file of files.values()) {
    for (const s of file.symbols) if (!symbolFile.has(s)) symbolFile.set(s, file);
    for (const m of file.messages) messages.add(m);
  }
  return { services: [...services].sort(), files, symbolFile, messages };
}

/** The file first, then its transitive imports that the index holds, each once. */
function withDependencies(index: ReflectionIndex, file: FileDescriptorSummary): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  const visit = (f: FileDescriptorSummary): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    out.push(f.bytes);
    for (const dep of f.dependencies) {
      const d = index.files.get(dep);
      if (d) visit(d);
    }
  };
  visit(file);
  return out;
}

const stripDot = (symbol: string): string => (symbol.startsWith('.') ? symbol.slice(1) : symbol);

/** Answers one reflection request. */
export function answerReflection(index: ReflectionIndex, req: ReflectionRequest): ReflectionResponse {
  const base = { valid_host: req.host ?? '', original_request: req };
  const notFound = (message: string): ReflectionResponse => ({
    ...base,
    error_response: { error_code: status.NOT_FOUND, error_message: message },
  });
  switch (req.message_request) {
    case 'list_services':
      return { ...base, list_services_response: { service: index.services.map((name) => ({ name })) } };
    case 'file_containing_symbol': {
      const symbol = stripDot(req.file_containing_symbol ?? '');
      const file = index.symbolFile.get(symbol);
      if (!file) return notFound(`symbol not found: ${symbol}`);
      return { ...base, file_descriptor_response: { file_descriptor_proto: withDependencies(index, file) } };
    }
    case 'file_by_filename': {
      const file = index.files.get(req.file_by_filename ?? '');
      if (!file) return notFound(`file not found: ${req.file_by_filename ?? ''}`);
      return { ...base, file_descriptor_response: { file_descriptor_proto: withDependencies(index, file) } };
    }
    case 'file_containing_extension':
      return notFound('no extensions are registered');
    case 'all_extension_numbers_of_type': {
      const type = stripDot(req.all_extension_numbers_of_type ?? '');
      if (!index.messages.has(type)) return notFound(`type not found: ${type}`);
      return { ...base, all_extension_numbers_response: { base_type_name: type, extension_number: [] } };
    }
    default:
      return {
        ...base,
        error_response: { error_code: status.UNIMPLEMENTED, error_message: 'unsupported reflection request' },
      };
  }
}

/** One response per request, in order; stops reading while the client is not reading its replies. */
function serveReflectionStream(index: ReflectionIndex, call: ServerDuplexStream<ReflectionRequest, ReflectionResponse>): void {
  call.on('data', (req: ReflectionRequest) => {
    if (!call.write(answerReflection(index, req))) {
      call.pause();
      call.once('drain', () => call.resume());
    }
  });
  call.on('end', () => call.end());
}

/**
 * Registers v1 and v1alpha reflection describing the services of `definitions`. Reflection itself is
 * listed too; pass the health definition to have it listed.
 */
export function addReflectionService(server: Server, definitions: readonly PackageDefinition[]): ReflectionIndex {
  const own = REFLECTION_SERVICES.map((name) => {
    const version = name.split('.')[2];
    return { name, def: loadDefinition(`grpc/reflection/${version}/reflection.proto`) };
  });
  const index = buildReflectionIndex([...definitions, ...own.map((o) => o.def)]);
  for (const { name, def } of own) {
    server.addService(def[name] as ServiceDefinition, {
      ServerReflectionInfo: (call: ServerDuplexStream<ReflectionRequest, ReflectionResponse>) =>
        serveReflectionStream(index, call),
    });
  }
  return index;
}
