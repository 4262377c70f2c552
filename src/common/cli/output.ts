// Shared CLI plumbing: printing data as text or JSON, and failing with one line and exit code 1.
import { EmblemError, errorMessage } from '../errors.js';

export type OutputFormat = 'pretty' | 'json';

export function parseOutputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'pretty' || value === 'text') return 'pretty';
  if (value === 'json') return 'json';
  throw new EmblemError('invalid_argument', `--output must be pretty or json, not ${JSON.stringify(value)}`);
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v), 2) + '\n');
}

/** Prints "key: value" lines, one block per record, blank line between records. */
export function printRecords(records: Record<string, unknown>[]): void {
  const blocks = records.map((r) =>
    Object.entries(r)
      .filter(([, v]) => v !== undefined && v !== '' && !(Array.isArray(v) && v.length === 0))
      .map(([k, v]) => `${k.padEnd(16)}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
      .join('\n'),
  );
  process.stdout.write(blocks.join('\n\n') + (blocks.length ? '\n' : ''));
}

/** Runs a CLI action; any error prints one line to stderr and exits 1. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.stderr.write(`error: ${errorMessage(err).split('\n')[0]}\n`);
      process.exit(1);
    }
  };
}

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function formatTime(unixSeconds: number): string {
  return unixSeconds ? new Date(unixSeconds * 1000).toISOString() : '';
}
