// One root pino logger per process. Secrets are never logged on purpose, and the redaction list
// below is the safety net: every field name that may carry a secret, at the top level and one or two
// levels down. Never pass `redact` to child(): it would replace this list.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

const SECRET_FIELDS = [
  'privateKey',
  'private_key',
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

export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (options.destination) return pino(base, options.destination);
  if (options.format === 'pretty') {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: 2, colorize: false } } });
  }
  return pino(base, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything (tests and library defaults). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
