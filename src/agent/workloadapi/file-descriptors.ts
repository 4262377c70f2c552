// Serialized google.protobuf.FileDescriptorProto handling for server reflection, on the protobuf wire
// format directly (field numbers from google/protobuf/descriptor.proto).
//
// @grpc/proto-loader's descriptors (protobufjs Root#toDescriptor) are one synthetic file per
// package ("root.proto", "google_protobuf.proto") with three defects a reflection client trips over:
// no `dependency` list although types of other files are referenced, relative type names, and map
// entry types named "Federated_bundles" where protoc and every validator expect "FederatedBundlesEntry".
// normalizeFileDescriptors repairs all three; summarizeFileDescriptor lists what a file declares.

export interface FileDescriptorSummary {
  name: string;
  package: string;
  dependencies: string[];
  /** Fully-qualified services, e.g. "SpiffeWorkloadAPI" or "grpc.health.v1.Health". */
  services: string[];
  /** Every fully-qualified name declared: messages (nested too), fields, enums, services, methods. */
  symbols: string[];
  /** Message types only (a subset of symbols). */
  messages: string[];
  bytes: Buffer;
}

interface WireField {
  field: number;
  /** Varint value, or the payload of a length-delimited field; undefined for fixed-width fields. */
  value: number | Buffer | undefined;
  /** The whole field as encoded (tag included), to copy it unchanged. */
  raw: Buffer;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// FileDescriptorProto
const FILE_NAME = 1;
const FILE_PACKAGE = 2;
const FILE_DEPENDENCY = 3;
const FILE_MESSAGE = 4;
const FILE_ENUM = 5;
const FILE_SERVICE = 6;
// DescriptorProto
const MSG_NAME = 1;
const MSG_FIELD = 2;
const MSG_NESTED = 3;
const MSG_ENUM = 4;
const MSG_EXTENSION = 6;
const MSG_OPTIONS = 7;
const MSG_OPTIONS_MAP_ENTRY = 7;
// FieldDescriptorProto
const FIELD_NAME = 1;
const FIELD_TYPE_NAME = 6;
// ServiceDescriptorProto / MethodDescriptorProto
const SERVICE_NAME = 1;
const SERVICE_METHOD = 2;
const METHOD_NAME = 1;
const METHOD_INPUT = 2;
const METHOD_OUTPUT = 3;

function readVarint(buf: Buffer, pos: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error('truncated varint in file descriptor');
    const byte = buf[pos++];
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return [value, pos];
    scale *= 128;
  }
  throw new Error('varint too long in file descriptor');
}

function readFields(buf: Buffer): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, afterTag] = readVarint(buf, pos);
    const wire = tag % 8;
    let value: WireField['value'];
    if (wire === WIRE_VARINT) {
      [value, pos] = readVarint(buf, afterTag);
    } else if (wire === WIRE_LEN) {
      const [len, next] = readVarint(buf, afterTag);
      if (next + len > buf.length) throw new Error('truncated field in file descriptor');
      value = buf.subarray(next, next + len);
      pos = next + len;
    } else if (wire === WIRE_FIXED64 || wire === WIRE_FIXED32) {
      pos = afterTag + (wire === WIRE_FIXED64 ? 8 : 4);
    } else {
      throw new Error(`unsupported wire type ${wire} in file descriptor`);
    }
    if (pos > buf.length) throw new Error('truncated file descriptor');
    out.push({ field: Math.floor(tag / 8), value, raw: buf.subarray(start, pos) });
  }
  return out;
}

function encodeVarint(n: number): Buffer {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function lenField(field: number, payload: Buffer | string): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([encodeVarint(field * 8 + WIRE_LEN), encodeVarint(bytes.length), bytes]);
}

const bytesOf = (fields: WireField[], field: number): Buffer[] =>
  fields.filter((f) => f.field === field && Buffer.isBuffer(f.value)).map((f) => f.value as Buffer);

function stringOf(fields: WireField[], field: number): string {
  const values = bytesOf(fields, field);
  return values.length > 0 ? values[values.length - 1].toString('utf8') : '';
}

/** Re-encodes a message, replacing the fields `replace` returns a value for (null drops the field). */
function rewrite(fields: WireField[], replace: (f: WireField) => Buffer | null | undefined, prepend: Buffer[] = []): Buffer {
  const parts = [...prepend];
  for (const f of fields) {
    const r = replace(f);
    if (r === undefined) parts.push(f.raw);
    else if (r !== null) parts.push(r);
  }
  return Buffer.concat(parts);
}

const qualify = (scope: string, name: string): string => (scope === '' ? name : `${scope}.${name}`);
const parentScope = (fqn: string): string => (fqn.includes('.') ? fqn.slice(0, fqn.lastIndexOf('.')) : '');

/** protoc's implicit map entry name: "federated_bundles" -> "FederatedBundlesEntry". */
export function mapEntryName(fieldName: string): string {
  const camel = fieldName.replace(/_+([a-z0-9])?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''));
  return camel.charAt(0).toUpperCase() + camel.slice(1) + 'Entry';
}

function isMapEntry(msgFields: WireField[]): boolean {
  return bytesOf(msgFields, MSG_OPTIONS).some((opts) =>
    readFields(opts).some((f) => f.field === MSG_OPTIONS_MAP_ENTRY && f.value === 1),
  );
}

interface TypeTable {
  /** Fully-qualified message and enum names (after renames) -> defining file. */
  fileOf: Map<string, string>;
  /** Old map entry FQN -> protoc-style FQN. */
  renames: Map<string, string>;
}

function collectTypes(buf: Buffer, scope: string, file: string, table: TypeTable, isEnum = false): void {
  const fields = readFields(buf);
  const fqn = qualify(scope, stringOf(fields, MSG_NAME));
  table.fileOf.set(fqn, file);
  if (isEnum) return;
  const nested = bytesOf(fields, MSG_NESTED).map(readFields);
  for (const entry of nested.filter(isMapEntry)) {
    const oldName = stringOf(entry, MSG_NAME);
    const mapField = bytesOf(fields, MSG_FIELD)
      .map(readFields)
      .find((f) => stringOf(f, FIELD_TYPE_NAME) === oldName);
    if (mapField) table.renames.set(qualify(fqn, oldName), qualify(fqn, mapEntryName(stringOf(mapField, FIELD_NAME))));
  }
  for (const n of bytesOf(fields, MSG_NESTED)) collectTypes(n, fqn, file, table);
  for (const e of bytesOf(fields, MSG_ENUM)) collectTypes(e, fqn, file, table, true);
}

/** Resolves a type reference as protoc does: absolute, or searched from the innermost scope outwards. */
function resolveType(name: string, scope: string, table: TypeTable): string | undefined {
  const known = (fqn: string): string | undefined => {
    const renamed = table.renames.get(fqn) ?? fqn;
    return table.fileOf.has(renamed) || table.fileOf.has(fqn) ? renamed : undefined;
  };
  if (name.startsWith('.')) return known(name.slice(1));
  for (let s = scope; ; s = parentScope(s)) {
    const found = known(qualify(s, name));
    if (found || s === '') return found;
  }
}

function normalizeMessage(buf: Buffer, scope: string, table: TypeTable, refs: Set<string>): Buffer {
  const fields = readFields(buf);
  const oldFqn = qualify(scope, stringOf(fields, MSG_NAME));
  const newFqn = table.renames.get(oldFqn);
  const fixField = (payload: Buffer): Buffer =>
    rewrite(readFields(payload), (f) => {
      if (f.field !== FIELD_TYPE_NAME || !Buffer.isBuffer(f.value)) return undefined;
      const resolved = resolveType(f.value.toString('utf8'), oldFqn, table);
      if (!resolved) return undefined;
      refs.add(resolved);
      return lenField(FIELD_TYPE_NAME, '.' + resolved);
    });
  return rewrite(fields, (f) => {
    if (!Buffer.isBuffer(f.value)) return undefined;
    if (f.field === MSG_NAME && newFqn) return lenField(MSG_NAME, newFqn.slice(newFqn.lastIndexOf('.') + 1));
    if (f.field === MSG_FIELD || f.field === MSG_EXTENSION) return lenField(f.field, fixField(f.value));
    if (f.field === MSG_NESTED) return lenField(MSG_NESTED, normalizeMessage(f.value, oldFqn, table, refs));
    return undefined;
  });
}

function normalizeService(buf: Buffer, pkg: string, table: TypeTable, refs: Set<string>): Buffer {
  return rewrite(readFields(buf), (f) => {
    if (f.field !== SERVICE_METHOD || !Buffer.isBuffer(f.value)) return undefined;
    const method = rewrite(readFields(f.value), (m) => {
      if ((m.field !== METHOD_INPUT && m.field !== METHOD_OUTPUT) || !Buffer.isBuffer(m.value)) return undefined;
      const resolved = resolveType(m.value.toString('utf8'), pkg, table);
      if (!resolved) return undefined;
      refs.add(resolved);
      return lenField(m.field, '.' + resolved);
    });
    return lenField(SERVICE_METHOD, method);
  });
}

/**
 * Makes a set of files self-consistent for reflection clients: fully-qualified type references,
 * protoc-style map entry names, and a `dependency` list naming every file whose types are used.
 */
export function normalizeFileDescriptors(files: readonly Buffer[]): Buffer[] {
  const table: TypeTable = { fileOf: new Map(), renames: new Map() };
  const parsed = files.map((bytes) => {
    const fields = readFields(bytes);
    return { fields, name: stringOf(fields, FILE_NAME), pkg: stringOf(fields, FILE_PACKAGE) };
  });
  for (const { fields, name, pkg } of parsed) {
    for (const m of bytesOf(fields, FILE_MESSAGE)) collectTypes(m, pkg, name, table);
    for (const e of bytesOf(fields, FILE_ENUM)) collectTypes(e, pkg, name, table, true);
  }
  for (const [oldFqn, newFqn] of table.renames) table.fileOf.set(newFqn, table.fileOf.get(oldFqn) ?? '');
  return parsed.map(({ fields, name, pkg }) => {
    const refs = new Set<string>();
    const body = rewrite(fields, (f) => {
      if (f.field === FILE_DEPENDENCY) return null;
      if (!Buffer.isBuffer(f.value)) return undefined;
      if (f.field === FILE_MESSAGE) return lenField(FILE_MESSAGE, normalizeMessage(f.value, pkg, table, refs));
      if (f.field === FILE_SERVICE) return lenField(FILE_SERVICE, normalizeService(f.value, pkg, table, refs));
      return undefined;
    });
    const deps = [...new Set([...refs].map((t) => table.fileOf.get(t)))].filter((d): d is string => !!d && d !== name).sort();
    return Buffer.concat([body, ...deps.map((d) => lenField(FILE_DEPENDENCY, d))]);
  });
}

function collectMessage(buf: Buffer, scope: string, out: FileDescriptorSummary): void {
  const fields = readFields(buf);
  const fqn = qualify(scope, stringOf(fields, MSG_NAME));
  out.symbols.push(fqn);
  out.messages.push(fqn);
  for (const f of bytesOf(fields, MSG_FIELD)) out.symbols.push(qualify(fqn, stringOf(readFields(f), FIELD_NAME)));
  for (const nested of bytesOf(fields, MSG_NESTED)) collectMessage(nested, fqn, out);
  for (const e of bytesOf(fields, MSG_ENUM)) out.symbols.push(qualify(fqn, stringOf(readFields(e), MSG_NAME)));
}

/** Parses the parts of a FileDescriptorProto that reflection needs. Throws on malformed input. */
export function summarizeFileDescriptor(bytes: Buffer): FileDescriptorSummary {
  const fields = readFields(bytes);
  const pkg = stringOf(fields, FILE_PACKAGE);
  const out: FileDescriptorSummary = {
    name: stringOf(fields, FILE_NAME),
    package: pkg,
    dependencies: bytesOf(fields, FILE_DEPENDENCY).map((b) => b.toString('utf8')),
    services: [],
    symbols: [],
    messages: [],
    bytes,
  };
  for (const m of bytesOf(fields, FILE_MESSAGE)) collectMessage(m, pkg, out);
  for (const e of bytesOf(fields, FILE_ENUM)) out.symbols.push(qualify(pkg, stringOf(readFields(e), MSG_NAME)));
  for (const s of bytesOf(fields, FILE_SERVICE)) {
    const sf = readFields(s);
    const fqn = qualify(pkg, stringOf(sf, SERVICE_NAME));
    out.services.push(fqn);
    out.symbols.push(fqn);
    for (const m of bytesOf(sf, SERVICE_METHOD)) out.symbols.push(qualify(fqn, stringOf(readFields(m), METHOD_NAME)));
  }
  return out;
}
