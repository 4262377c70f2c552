// Loading a component's YAML config file and merging command-line flags over it. Keys in the file
// are camelCase versions of the kebab-case flags; an unknown key is an error that names it, so a
// typo never silently falls back to a default.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { invalidArgument } from './errors.js';

export type RawConfig = Record<string, unknown>;

export function readYamlConfig(path: string, knownKeys: readonly string[]): RawConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw invalidArgument(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw invalidArgument(`config file ${path} must be a YAML mapping`);
  const known = new Set(knownKeys);
  for (const key of Object.keys(doc)) {
    if (!known.has(key)) throw invalidArgument(`config file ${path}: unknown key "${key}"`);
  }
  return doc as RawConfig;
}

/** Flags given on the command line win over the file; undefined flags are ignored. */
export function mergeConfig(file: RawConfig, flags: RawConfig): RawConfig {
  const out: RawConfig = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) out[k] = v;
  return out;
}

export function kebabToCamel(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export function asString(raw: RawConfig, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw invalidArgument(`config key "${key}" must be a string`);
  return String(v);
}

export function asBoolean(raw: RawConfig, key: string): boolean | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw invalidArgument(`config key "${key}" must be true or false`);
}

export function asStringList(raw: RawConfig, key: string): string[] | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw invalidArgument(`config key "${key}" must be a list of strings`);
}

/** Parses "host:port" (IPv6 as "[::1]:8081"). */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw invalidArgument(`${what} ${JSON.stringify(text)} must be HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}
