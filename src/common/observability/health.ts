// Health checks behind /live and /ready. Each check is bounded by a timeout so that a hung
// dependency (a datastore that never answers) shows as a failed check instead of hanging the probe.
import { connect } from 'node:net';

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface HealthReport {
  ok: boolean;
  checks: HealthCheck[];
}

/** What a single check returns; throwing counts as `{ok: false, detail: <message>}`. */
export interface CheckResult {
  ok: boolean;
  detail?: string;
}

export type CheckFn = () => CheckResult | Promise<CheckResult>;

export const DEFAULT_CHECK_TIMEOUT_MS = 2_000;

/** Resolves with `fallback()` if `work` has not settled within `timeoutMs`; the timer never keeps the process alive. */
export function withTimeout<T>(work: Promise<T>, timeoutMs: number, fallback: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => resolve(fallback()), timeoutMs);
    timer.unref();
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Runs one named check with a timeout; a throw or a timeout is a failed check, never a rejection. */
export async function timedCheck(name: string, fn: CheckFn, timeoutMs = DEFAULT_CHECK_TIMEOUT_MS): Promise<HealthCheck> {
  try {
    const result = await withTimeout<CheckResult>(
      Promise.resolve().then(fn),
      timeoutMs,
      () => ({ ok: false, detail: `timed out after ${timeoutMs} ms` }),
    );
    return { name, ok: result.ok === true, detail: result.detail ?? '' };
  } catch (err) {
    return { name, ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

/** Runs named checks concurrently, each with its own timeout, in the order given. */
export function runChecks(checks: Record<string, CheckFn>, timeoutMs = DEFAULT_CHECK_TIMEOUT_MS): Promise<HealthCheck[]> {
  return Promise.all(Object.entries(checks).map(([name, fn]) => timedCheck(name, fn, timeoutMs)));
}

export function summarize(checks: HealthCheck[]): HealthReport {
  return { ok: checks.every((c) => c.ok), checks };
}

/**
 * A check that a Unix socket (e.g. the Workload API socket) accepts a connection right now. It
 * connects and closes at once; the server sees a connection that sends nothing.
 */
export function unixSocketAccepts(path: string, timeoutMs = DEFAULT_CHECK_TIMEOUT_MS): Promise<CheckResult> {
  return new Promise<CheckResult>((resolve) => {
    const socket = connect({ path });
    const done = (result: CheckResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: false, detail: `no connection to ${path} within ${timeoutMs} ms` }), timeoutMs);
    timer.unref();
    socket.once('connect', () => done({ ok: true, detail: path }));
    socket.once('error', (err) => done({ ok: false, detail: `${path}: ${err.message}` }));
  });
}
