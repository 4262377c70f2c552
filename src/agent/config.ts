// emblem-agent configuration: a YAML file (camelCase keys) with command-line flags (kebab-case)
// laid over it. One table, AGENT_CONFIG_OPTIONS, lists every setting: the CLI registers its flags
// from it and the file loader accepts exactly its keys.
//
// | flag                       | file key             | default                           |
// |----------------------------|----------------------|-----------------------------------|
// | --server-address           | serverAddress        | (required) HOST:PORT              |
// | --trust-domain             | trustDomain          | (required)                        |
// | --join-token               | joinToken            | none                              |
// | --x509pop-cert             | x509popCert          | none (PEM chain, leaf first)      |
// | --x509pop-key              | x509popKey           | none (PEM private key)            |
// | --trust-bundle             | trustBundle          | none (PEM or SPIFFE bundle JSON)  |
// | --insecure-bootstrap       | insecureBootstrap    | false                             |
// | --socket                   | socket               | /tmp/emblem-agent/public/api.sock |
// | --data-dir                 | dataDir              | ./.emblem/agent                   |
// | --log-level                | logLevel             | info                              |
// | --log-format               | logFormat            | json                              |
// | --metrics-bind             | metricsBind          | none (HOST:PORT)                  |
// | --health-bind              | healthBind           | none (HOST:PORT)                  |
// | --discover-workload-path   | discoverWorkloadPath | false                             |
// | --workload-size-limit      | workloadSizeLimit    | 0                                 |
//
// Relative paths are relative to the working directory, not to the config file.
import { invalidArgument } from '../common/errors.js';
import { asBoolean, asString, kebabToCamel, mergeConfig, parseHostPort, readYamlConfig, type RawConfig } from '../common/config-file.js';
import { DEFAULT_WORKLOAD_SOCKET } from '../common/endpoint-address.js';
import type { LogFormat } from '../common/logger.js';
import { parseTrustDomain } from '../common/spiffe-id.js';

export interface AgentConfig {
  /** The server's Node API, "host:port". */
  serverAddress: string;
  trustDomain: string;
  /** Join token for the first attestation (single use). */
  joinToken?: string;
  /** x509pop: path of the PEM certificate chain (leaf first) and of its PEM private key. */
  x509popCert?: string;
  x509popKey?: string;
  /** Path of the bootstrap trust bundle used to authenticate the server. */
  trustBundle?: string;
  /** First attestation only: do not verify the server's chain (its URI SAN is still checked). */
  insecureBootstrap: boolean;
  /** Workload API socket path. */
  socket: string;
  /** Agent state lives in `<dataDir>/agent` (mode 0700), including the agent's private key. */
  dataDir: string;
  logLevel: string;
  logFormat: LogFormat;
  metricsBind?: string;
  healthBind?: string;
  /** Add unix:path and unix:sha256 workload selectors (reads /proc/<pid>/exe). */
  discoverWorkloadPath: boolean;
  /** Largest workload binary hashed for unix:sha256, in bytes; 0 = no limit, negative = never hash. */
  workloadSizeLimit: number;
}

export type AgentConfigKey = keyof AgentConfig;

export interface AgentConfigOption {
  key: AgentConfigKey;
  /** The kebab-case flag, without the leading "--". */
  flag: string;
  kind: 'string' | 'boolean' | 'integer';
  description: string;
  /** The default shown in help (the value itself is applied by parseAgentConfig). */
  defaultText?: string;
}

export const DEFAULT_DATA_DIR = './.emblem/agent';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const AGENT_CONFIG_OPTIONS: readonly AgentConfigOption[] = [
  { key: 'serverAddress', flag: 'server-address', kind: 'string', description: 'emblem-server Node API address (HOST:PORT)' },
  { key: 'trustDomain', flag: 'trust-domain', kind: 'string', description: 'trust domain, e.g. example.org' },
  { key: 'joinToken', flag: 'join-token', kind: 'string', description: 'join token for the first attestation (single use)' },
  { key: 'x509popCert', flag: 'x509pop-cert', kind: 'string', description: 'x509pop: PEM certificate chain, leaf first' },
  { key: 'x509popKey', flag: 'x509pop-key', kind: 'string', description: 'x509pop: PEM private key of the leaf' },
  { key: 'trustBundle', flag: 'trust-bundle', kind: 'string', description: 'bootstrap trust bundle (PEM or SPIFFE bundle JSON)' },
  {
    key: 'insecureBootstrap',
    flag: 'insecure-bootstrap',
    kind: 'boolean',
    description: 'first attestation only: skip server chain verification (URI SAN still checked)',
    defaultText: 'false',
  },
  { key: 'socket', flag: 'socket', kind: 'string', description: 'Workload API socket path', defaultText: DEFAULT_WORKLOAD_SOCKET },
  { key: 'dataDir', flag: 'data-dir', kind: 'string', description: 'agent state directory (holds the agent key)', defaultText: DEFAULT_DATA_DIR },
  { key: 'logLevel', flag: 'log-level', kind: 'string', description: LOG_LEVELS.join('|'), defaultText: 'info' },
  { key: 'logFormat', flag: 'log-format', kind: 'string', description: 'json|pretty', defaultText: 'json' },
  { key: 'metricsBind', flag: 'metrics-bind', kind: 'string', description: 'Prometheus /metrics listener (HOST:PORT)' },
  { key: 'healthBind', flag: 'health-bind', kind: 'string', description: 'health check listener (HOST:PORT)' },
  {
    key: 'discoverWorkloadPath',
    flag: 'discover-workload-path',
    kind: 'boolean',
    description: 'add unix:path and unix:sha256 workload selectors',
    defaultText: 'false',
  },
  {
    key: 'workloadSizeLimit',
    flag: 'workload-size-limit',
    kind: 'integer',
    description: 'largest workload binary to hash, bytes (0 = no limit, <0 = never hash)',
    defaultText: '0',
  },
];

const KNOWN_KEYS: readonly string[] = AGENT_CONFIG_OPTIONS.map((o) => o.key);

function optionalPath(raw: RawConfig, key: AgentConfigKey): string | undefined {
  const v = asString(raw, key);
  if (v === undefined) return undefined;
  if (v.length === 0) throw invalidArgument(`config key "${key}" must not be empty`);
  if (v.includes('\0')) throw invalidArgument(`config key "${key}" must not contain a NUL byte`);
  return v;
}

function integer(raw: RawConfig, key: AgentConfigKey, fallback: number): number {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!Number.isSafeInteger(n)) throw invalidArgument(`config key "${key}" must be an integer`);
  return n;
}

function hostPort(raw: RawConfig, key: AgentConfigKey): string | undefined {
  const v = asString(raw, key);
  if (v === undefined) return undefined;
  parseHostPort(v, `config key "${key}"`);
  return v;
}

/** Validates a merged raw config (camelCase keys) and applies defaults. */
export function parseAgentConfig(raw: RawConfig): AgentConfig {
  for (const key of Object.keys(raw)) {
    if (!KNOWN_KEYS.includes(key)) throw invalidArgument(`unknown config key "${key}"`);
  }
  const serverAddress = hostPort(raw, 'serverAddress');
  if (serverAddress === undefined) throw invalidArgument('serverAddress (--server-address) is required');
  const tdText = asString(raw, 'trustDomain');
  if (tdText === undefined) throw invalidArgument('trustDomain (--trust-domain) is required');
  const trustDomain = parseTrustDomain(tdText);
  if (tdText !== trustDomain) throw invalidArgument('trustDomain must be a trust domain name such as "example.org", not a SPIFFE ID');

  const joinToken = asString(raw, 'joinToken');
  if (joinToken !== undefined && joinToken.length === 0) throw invalidArgument('joinToken must not be empty');
  const x509popCert = optionalPath(raw, 'x509popCert');
  const x509popKey = optionalPath(raw, 'x509popKey');
  if ((x509popCert === undefined) !== (x509popKey === undefined)) {
    throw invalidArgument('x509popCert (--x509pop-cert) and x509popKey (--x509pop-key) must be given together');
  }
  if (joinToken !== undefined && x509popCert !== undefined) {
    throw invalidArgument('joinToken and x509popCert/x509popKey are mutually exclusive: choose one node attestor');
  }
  const trustBundle = optionalPath(raw, 'trustBundle');
  const insecureBootstrap = asBoolean(raw, 'insecureBootstrap') ?? false;
  if (trustBundle !== undefined && insecureBootstrap) {
    throw invalidArgument('trustBundle (--trust-bundle) and insecureBootstrap (--insecure-bootstrap) are mutually exclusive');
  }

  const logLevel = asString(raw, 'logLevel') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw invalidArgument(`logLevel ${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const logFormat = asString(raw, 'logFormat') ?? 'json';
  if (logFormat !== 'json' && logFormat !== 'pretty') throw invalidArgument(`logFormat ${JSON.stringify(logFormat)} must be json or pretty`);

  const config: AgentConfig = {
    serverAddress,
    trustDomain,
    insecureBootstrap,
    socket: optionalPath(raw, 'socket') ?? DEFAULT_WORKLOAD_SOCKET,
    dataDir: optionalPath(raw, 'dataDir') ?? DEFAULT_DATA_DIR,
    logLevel,
    logFormat,
    discoverWorkloadPath: asBoolean(raw, 'discoverWorkloadPath') ?? false,
    workloadSizeLimit: integer(raw, 'workloadSizeLimit', 0),
  };
  if (joinToken !== undefined) config.joinToken = joinToken;
  if (x509popCert !== undefined) config.x509popCert = x509popCert;
  if (x509popKey !== undefined) config.x509popKey = x509popKey;
  if (trustBundle !== undefined) config.trustBundle = trustBundle;
  const metricsBind = hostPort(raw, 'metricsBind');
  if (metricsBind !== undefined) config.metricsBind = metricsBind;
  const healthBind = hostPort(raw, 'healthBind');
  if (healthBind !== undefined) config.healthBind = healthBind;
  return config;
}

export interface LoadAgentConfigOptions {
  /** Path of the YAML config file, if any. */
  configFile?: string;
  /** Flag values keyed by camelCase key (kebab-case keys are accepted too); undefined = not given. */
  flags?: RawConfig;
}

/** Reads the file (if any), lays the flags over it and validates the result. */
export function loadAgentConfig(options: LoadAgentConfigOptions = {}): AgentConfig {
  const file = options.configFile === undefined ? {} : readYamlConfig(options.configFile, KNOWN_KEYS);
  const flags: RawConfig = {};
  for (const [k, v] of Object.entries(options.flags ?? {})) flags[kebabToCamel(k)] = v;
  return parseAgentConfig(mergeConfig(file, flags));
}
