// emblem-server configuration: defaults, the YAML file (camelCase keys) and flag overrides.
// docs/operations.md lists every key (test/docs/docs.test.ts keeps them in step; test/server/config.test.ts checks each key has a run flag).
import { resolve } from 'node:path';
import { asString, asStringList, mergeConfig, parseHostPort, readYamlConfig, type RawConfig } from '../common/config-file.js';
import { parseDurationSeconds } from '../common/duration.js';
import { invalidArgument } from '../common/errors.js';
import type { LogFormat } from '../common/logger.js';
import { parseTrustDomain } from '../common/spiffe-id.js';
import { defaultCsrVerifyWorkers, MAX_CSR_VERIFY_WORKERS } from './ca/csr-verify-pool.js';

export interface ServerConfig {
  trustDomain: string;
  bindHost: string;
  bindPort: number;
  socket: string;
  dataDir: string;
  logLevel: string;
  logFormat: LogFormat;
  /** Seconds. */
  caTtl: number;
  x509SvidTtl: number;
  jwtSvidTtl: number;
  agentSvidTtl: number;
  joinTokenTtl: number;
  /** PEM files of an upstream CA: the server CA is then an intermediate signed by it. */
  upstreamCert?: string;
  upstreamKey?: string;
  /** x509pop CA-signed model: PEM bundles whose certificates agents' certificates must chain to. */
  x509popCaBundles: string[];
  /** x509pop pinned model: SHA-256 fingerprints (hex) of accepted self-signed agent certificates. */
  x509popPinned: string[];
  /** Attestation attempts allowed per source address per minute. */
  attestationRateLimit: number;
  metricsBind?: string;
  healthBind?: string;
  /** Seconds between CA rotation checks. */
  rotationInterval: number;
  /** Threads that check CSR signatures; 0 checks them on the main thread. */
  csrVerifyWorkers: number;
}

export const SERVER_DEFAULTS = {
  bind: '127.0.0.1:8081',
  socket: '/tmp/emblem-server/private/api.sock',
  dataDir: './.emblem/server',
  logLevel: 'info',
  logFormat: 'json' as LogFormat,
  caTtl: '24h',
  x509SvidTtl: '1h',
  jwtSvidTtl: '5m',
  agentSvidTtl: '1h',
  joinTokenTtl: '600s',
  attestationRateLimit: 60,
  rotationInterval: '10s',
};

/** Every key the YAML file may hold (and, in kebab-case, every `run` flag). */
export const SERVER_CONFIG_KEYS = [
  'trustDomain',
  'bind',
  'socket',
  'dataDir',
  'logLevel',
  'logFormat',
  'caTtl',
  'x509SvidTtl',
  'jwtSvidTtl',
  'agentSvidTtl',
  'joinTokenTtl',
  'upstreamCert',
  'upstreamKey',
  'x509popCaBundles',
  'x509popPinned',
  'attestationRateLimit',
  'metricsBind',
  'healthBind',
  'rotationInterval',
  'csrVerifyWorkers',
] as const;

const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export function loadServerConfig(configFile: string | undefined, flags: RawConfig): ServerConfig {
  const file = configFile ? readYamlConfig(configFile, SERVER_CONFIG_KEYS) : {};
  return buildServerConfig(mergeConfig(file, flags));
}

export function buildServerConfig(raw: RawConfig): ServerConfig {
  const td = asString(raw, 'trustDomain');
  if (!td) throw invalidArgument('trust domain is required (--trust-domain or trustDomain in the config file)');
  const { host, port } = parseHostPort(asString(raw, 'bind') ?? SERVER_DEFAULTS.bind, 'bind address');
  const logLevel = asString(raw, 'logLevel') ?? SERVER_DEFAULTS.logLevel;
  if (!LOG_LEVELS.has(logLevel)) throw invalidArgument(`log level ${JSON.stringify(logLevel)} must be one of ${[...LOG_LEVELS].join(', ')}`);
  const logFormat = (asString(raw, 'logFormat') ?? SERVER_DEFAULTS.logFormat) as LogFormat;
  if (logFormat !== 'json' && logFormat !== 'pretty') throw invalidArgument('log format must be json or pretty');
  const seconds = (key: keyof typeof SERVER_DEFAULTS & string, min: number) => {
    const v = parseDurationSeconds((raw[key] as string | number | undefined) ?? (SERVER_DEFAULTS[key] as string), key);
    if (v < min) throw invalidArgument(`${key} must be at least ${min} seconds`);
    return v;
  };
  const config: ServerConfig = {
    trustDomain: parseTrustDomain(td),
    bindHost: host,
    bindPort: port,
    socket: resolve(asString(raw, 'socket') ?? SERVER_DEFAULTS.socket),
    dataDir: resolve(asString(raw, 'dataDir') ?? SERVER_DEFAULTS.dataDir),
    logLevel,
    logFormat,
    caTtl: seconds('caTtl', 60),
    x509SvidTtl: seconds('x509SvidTtl', 10),
    jwtSvidTtl: seconds('jwtSvidTtl', 10),
    agentSvidTtl: seconds('agentSvidTtl', 10),
    joinTokenTtl: seconds('joinTokenTtl', 1),
    upstreamCert: asString(raw, 'upstreamCert'),
    upstreamKey: asString(raw, 'upstreamKey'),
    x509popCaBundles: asStringList(raw, 'x509popCaBundles') ?? [],
    x509popPinned: (asStringList(raw, 'x509popPinned') ?? []).map(normaliseFingerprint),
    attestationRateLimit: Number(raw['attestationRateLimit'] ?? SERVER_DEFAULTS.attestationRateLimit),
    metricsBind: asString(raw, 'metricsBind'),
    healthBind: asString(raw, 'healthBind'),
    rotationInterval: seconds('rotationInterval', 1),
    // Not in SERVER_DEFAULTS: the default depends on the machine.
    csrVerifyWorkers: wholeNumber(raw, 'csrVerifyWorkers', MAX_CSR_VERIFY_WORKERS) ?? defaultCsrVerifyWorkers(),
  };
  if (Boolean(config.upstreamCert) !== Boolean(config.upstreamKey)) {
    throw invalidArgument('upstreamCert and upstreamKey must be given together');
  }
  if (!Number.isInteger(config.attestationRateLimit) || config.attestationRateLimit < 1) {
    throw invalidArgument('attestationRateLimit must be a positive integer');
  }
  if (config.metricsBind) parseHostPort(config.metricsBind, 'metrics bind address');
  if (config.healthBind) parseHostPort(config.healthBind, 'health bind address');
  return config;
}

/** A whole number from 0 to `max`: a YAML number or a flag's digits; anything else is refused, never coerced. */
function wholeNumber(raw: RawConfig, key: string, max: number): number | undefined {
  const value = raw[key];
  if (value === undefined || value === null) return undefined;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw invalidArgument(`${key} must be a whole number from 0 to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

function normaliseFingerprint(fp: string): string {
  const hex = fp.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw invalidArgument(`x509pop pinned fingerprint ${JSON.stringify(fp)} must be a SHA-256 hex digest`);
  return hex;
}
