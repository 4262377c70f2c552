// One root pino logger per process. Secrets are never logged on purpose, and redaction is the
// safety net: any key named like a secret is censored at ANY depth, in log objects (formatters.log)
// and in child-logger bindings (a child() wrapper: pino resets the bindings formatter for children,
// so formatters.bindings would miss them). Key-based rather than pino's path-based `redact`, which
// only reaches the depths listed, and whose `*.*.x` paths make a log call THROW on a top-level
// Buffer (pino 10.4 / @pinojs/redact 0.4: "Method get TypedArray.prototype.buffer called on
// incompatible receiver"). Never pass `formatters` to child(): its `log` would replace the scrubbing.
import { pino, type Bindings, type Logger, type DestinationStream } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

export const SECRET_FIELDS = [
  'privateKey',
  'private_key',
  'privateKeyPkcs8',
  'upstreamPrivateKey',
  'caPrivateKey',
  'key',
  'keyPem',
  'x509_svid_key',
  'token',
  'joinToken',
  'join_token',
  'jwt',
  'svid',
  'password',
  'authorization',
  'csr',
];

const CENSOR = '[redacted]';
/** Nesting beyond this prints as "[Object]": nothing that deep is worth a leak risk. */
const MAX_DEPTH = 8;
const normalizeKey = (key: string): string => key.toLowerCase().replace(/[_-]/g, '');
const SECRET_KEYS = new Set(SECRET_FIELDS.map(normalizeKey));

/**
 * A copy of `value` fit for a log line: secret-named keys censored at any depth (matching ignores
 * case, "_" and "-"), Errors in pino's err shape, binary data as "[Buffer N bytes]", cycles as
 * "[Circular]". The caller's objects are never modified.
 */
export function scrubSecrets(value: unknown, depth = 0, ancestors: object[] = []): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value)) return `[${value.constructor.name} ${value.byteLength} bytes]`;
  if (value instanceof ArrayBuffer) return `[ArrayBuffer ${value.byteLength} bytes]`;
  if (ancestors.includes(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Object]';
  let source: object = value;
  if (value instanceof Error) source = pino.stdSerializers.err(value);
  else if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return scrubSecrets((value as { toJSON(): unknown }).toJSON(), depth, ancestors);
  }
  ancestors.push(value);
  try {
    if (Array.isArray(source)) return source.map((v: unknown) => scrubSecrets(v, depth + 1, ancestors));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(source)) {
      const v = (source as Record<string, unknown>)[key];
      out[key] = SECRET_KEYS.has(normalizeKey(key)) ? CENSOR : scrubSecrets(v, depth + 1, ancestors);
    }
    return out;
  } finally {
    ancestors.pop();
  }
}

export interface LoggerOptions {
  level?: string;
  format?: LogFormat;
  name?: string;
  /** For tests: write here instead of stderr. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    level: options.level ?? 'info',
    name: options.name,
    formatters: { log: (obj: Record<string, unknown>) => scrubSecrets(obj) as Record<string, unknown> },
    // scrubSecrets already gave errors the err shape; pino's err serializer would take that plain
    // object for an error again and report its type as "Object".
    serializers: { err: (v: unknown) => v },
  };
  let root: Logger;
  if (options.destination) root = pino(base, options.destination);
  else if (options.format === 'pretty') {
    root = pino({ ...base, transport: { target: 'pino-pretty', options: { destination: 2, colorize: false } } });
  } else root = pino(base, pino.destination({ dest: 2, sync: false }));
  return scrubChildBindings(root);
}

/**
 * pino builds a child with Object.create(parent), so an own `child` on the root is inherited by
 * every descendant: each one's bindings are scrubbed before pino serializes them.
 */
function scrubChildBindings(root: Logger): Logger {
  const pinoChild = root.child;
  root.child = function (this: Logger, bindings: Bindings, ...rest: unknown[]): Logger {
    return Reflect.apply(pinoChild, this, [scrubSecrets(bindings), ...rest]) as Logger;
  } as unknown as Logger['child'];
  return root;
}

/** A logger that drops everything (tests and library defaults). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
