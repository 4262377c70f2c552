// Proof-of-possession checks of CSR batches (parseCsr: DER parse, key import, signature verify;
// then the SPKI export the signer needs), spread over worker threads. They are about 2/3 of the
// server's CPU for a BatchNewX509SVID; on the main thread they would use one core and hold up every
// other agent meanwhile.
//
// A batch is split into one chunk per ready worker, one message each way per chunk. Small batches,
// batches arriving while no worker is ready (the workers start with the first large batch), and the
// chunks of a worker that dies are checked on the main thread: a CSR is never lost, and never
// accepted without its signature check.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { EmblemError, errorMessage, invalidArgument, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { parseCsr } from '../../common/x509/csr.js';
import { exportSpkiDer, isCanonicalP256Spki } from '../../common/x509/keys.js';

/** A checked CSR: the SubjectPublicKeyInfo DER to certify, or why the CSR was rejected. */
export type CsrCheck = { spki: Buffer } | { error: Error };

export interface CsrVerifyPool {
  /** One result per CSR, in request order. Never rejects. */
  verify(csrs: readonly Buffer[]): Promise<CsrCheck[]>;
  /** Worker threads started and not exited (ready or still loading); tests terminate one to check recovery. */
  workers(): readonly Worker[];
  /** Resolves once every started worker is ready to take chunks (or has exited). */
  ready(): Promise<void>;
  /** Terminates every worker; later batches are checked on the main thread. */
  close(): Promise<void>;
}

export interface CsrVerifyPoolOptions {
  /** Worker threads; 0 checks every CSR on the main thread. */
  workers: number;
  logger: Logger;
  /** Batches smaller than this are checked on the main thread (default INLINE_BELOW). */
  inlineBelow?: number;
}

/**
 * Below this a batch is checked on the main thread. Measured on Node 20, 2-core EPYC: one P-256 CSR
 * takes about 0.2 ms, a round trip to a worker about 0.2 ms; two workers win from about 4 CSRs, but
 * by under 1 ms below 16, not worth starting threads on a server that only sees such batches.
 */
export const INLINE_BELOW = 16;
export const MAX_CSR_VERIFY_WORKERS = 64;

export function defaultCsrVerifyWorkers(): number {
  return Math.min(availableParallelism(), 4);
}

/**
 * The SPKI DER as the signer would export it from the verified key (mintX509Svid re-exports a
 * KeyObject the same way), so a leaf certifies exactly the bytes it would have without the pool.
 */
export function checkCsr(der: Buffer): CsrCheck {
  try {
    const csr = parseCsr(der);
    // The usual P-256 key is already in OpenSSL's exact form: skip the ~20 µs export.
    return { spki: isCanonicalP256Spki(csr.spkiDer) ? csr.spkiDer : exportSpkiDer(csr.publicKey) };
  } catch (err) {
    return { error: err instanceof Error ? err : new Error(String(err)) };
  }
}

const checkInline = (csrs: readonly Buffer[]): CsrCheck[] => csrs.map(checkCsr);

// Wire format: the DER of a chunk's CSRs (or of its results' SPKIs) back to back in one transferred
// ArrayBuffer, with the end offset of each item.

export interface ChunkRequest {
  id: number;
  bytes: ArrayBuffer;
  ends: number[];
}

export interface ChunkReply {
  id: number;
  bytes: ArrayBuffer;
  ends: number[];
  /** Per item: null when its SPKI is in `bytes`; `code` is absent for errors that are not EmblemErrors. */
  errors: ({ code?: ErrorCode; message: string } | null)[];
}

/** The message a worker posts once it can take chunks. */
export const WORKER_READY = 'ready';

function pack(items: readonly Uint8Array[]): { bytes: ArrayBuffer; ends: number[] } {
  const ends: number[] = [];
  let total = 0;
  for (const item of items) ends.push((total += item.length));
  const bytes = new ArrayBuffer(total);
  const view = new Uint8Array(bytes);
  items.forEach((item, i) => view.set(item, ends[i]! - item.length));
  return { bytes, ends };
}

function unpack(bytes: ArrayBuffer, ends: readonly number[]): Buffer[] {
  return ends.map((end, i) => Buffer.from(bytes, i === 0 ? 0 : ends[i - 1]!, end - (i === 0 ? 0 : ends[i - 1]!)));
}

/** The work of a worker: checks every CSR of a request. */
export function checkChunk(request: ChunkRequest): ChunkReply {
  const checks = unpack(request.bytes, request.ends).map(checkCsr);
  const { bytes, ends } = pack(checks.map((c) => ('spki' in c ? c.spki : Buffer.alloc(0))));
  const errors = checks.map((c) => {
    if ('spki' in c) return null;
    return c.error instanceof EmblemError ? { code: c.error.code, message: c.error.message } : { message: c.error.message };
  });
  return { id: request.id, bytes, ends, errors };
}

function readReply(reply: ChunkReply): CsrCheck[] {
  const spkis = unpack(reply.bytes, reply.ends);
  return reply.errors.map((e, i) => {
    if (!e) return { spki: spkis[i]! };
    return { error: e.code ? new EmblemError(e.code, e.message) : new Error(e.message) };
  });
}

/**
 * A worker running csr-verify-worker next to this module: the .js file when compiled. From the
 * sources, the worker registers tsx's CommonJS hook itself and requires the .ts file: Node 20 does
 * not apply ESM loader hooks from --import to a worker's entry module (nodejs/node#47747; inherited
 * or given in execArgv alike), and tsx's CommonJS hook needs no loader thread, so it also starts in a
 * third of the time (~65 ms against ~200 ms).
 */
function newWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./csr-verify-worker.js', import.meta.url));
  const entry = fileURLToPath(new URL('./csr-verify-worker.ts', import.meta.url));
  const tsxCjsApi = createRequire(import.meta.url).resolve('tsx/cjs/api');
  // Evaluated as CommonJS or as ESM (the worker inherits --input-type): import() works in both.
  const bootstrap = `import('node:module').then(({ createRequire }) => {
    const load = createRequire(${JSON.stringify(entry)});
    load(${JSON.stringify(tsxCjsApi)}).register();
    load(${JSON.stringify(entry)});
  })`;
  return new Worker(bootstrap, { eval: true });
}

interface Thread {
  worker: Worker;
  ready: boolean;
  /** Chunks sent and not answered, by id, with their CSRs to check inline if the worker dies. */
  pending: Map<number, { csrs: readonly Buffer[]; resolve(checks: CsrCheck[]): void }>;
}

export function createCsrVerifyPool(options: CsrVerifyPoolOptions): CsrVerifyPool {
  const { workers } = options;
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_CSR_VERIFY_WORKERS) {
    throw invalidArgument(`CSR verify workers must be a whole number from 0 to ${MAX_CSR_VERIFY_WORKERS}, got ${workers}`);
  }
  const log = options.logger.child({ component: 'csr-verify' });
  const inlineBelow = options.inlineBelow ?? INLINE_BELOW;
  const threads = new Set<Thread>();
  const readyWaiters = new Set<() => void>();
  let closed = false;
  let nextId = 0;

  const settleReadyWaiters = () => {
    if ([...threads].some((t) => !t.ready)) return;
    for (const wake of readyWaiters) wake();
    readyWaiters.clear();
  };

  function start(): void {
    let worker: Worker;
    try {
      worker = newWorker();
    } catch (err) {
      log.error({ reason: errorMessage(err) }, 'cannot start a CSR verify worker; CSRs are checked on the main thread');
      return;
    }
    // An idle pool never keeps the process alive; a worker holding chunks does (see dispatch).
    worker.unref();
    const thread: Thread = { worker, ready: false, pending: new Map() };
    threads.add(thread);
    worker.on('message', (message: ChunkReply | typeof WORKER_READY) => {
      if (message === WORKER_READY) {
        thread.ready = true;
        log.debug({ threadId: worker.threadId }, 'CSR verify worker ready');
        settleReadyWaiters();
        return;
      }
      const chunk = thread.pending.get(message.id);
      if (!chunk) return;
      thread.pending.delete(message.id);
      if (thread.pending.size === 0) worker.unref();
      chunk.resolve(readReply(message));
    });
    worker.on('error', (err) => log.error({ reason: errorMessage(err) }, 'CSR verify worker failed'));
    // A reply that cannot be read would leave its chunk waiting forever: retire the worker instead.
    worker.on('messageerror', () => void worker.terminate());
    worker.on('exit', (exitCode) => {
      threads.delete(thread);
      settleReadyWaiters();
      const orphans = [...thread.pending.values()];
      thread.pending.clear();
      for (const chunk of orphans) chunk.resolve(checkInline(chunk.csrs));
      if (closed) return;
      if (thread.ready) {
        log.warn({ exitCode, chunks: orphans.length }, 'CSR verify worker exited; its CSRs were checked on the main thread; replacing it');
        start();
      } else {
        log.error({ exitCode }, 'CSR verify worker exited while starting; not replaced (batches go to the other workers, or the main thread)');
      }
    });
  }

  function dispatch(thread: Thread, csrs: readonly Buffer[]): Promise<CsrCheck[]> {
    const id = nextId++;
    const { bytes, ends } = pack(csrs);
    return new Promise((resolve) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { csrs, resolve });
      const request: ChunkRequest = { id, bytes, ends };
      thread.worker.postMessage(request, [bytes]);
    });
  }

  // Workers start with the first batch that would use them: a server that never sees one keeps no
  // threads (each holds a V8 isolate, ~14 MiB resident compiled), and that batch is checked inline.
  let started = false;
  const startOnce = () => {
    if (started || closed) return;
    started = true;
    for (let i = 0; i < workers; i++) start();
  };

  return {
    async verify(csrs) {
      if (csrs.length < inlineBelow || !csrs.every((c) => Buffer.isBuffer(c))) return checkInline(csrs);
      startOnce();
      const ready = [...threads].filter((t) => t.ready);
      if (ready.length === 0) return checkInline(csrs);
      const size = Math.ceil(csrs.length / ready.length);
      const chunks: Promise<CsrCheck[]>[] = [];
      for (let i = 0; i * size < csrs.length; i++) chunks.push(dispatch(ready[i]!, csrs.slice(i * size, (i + 1) * size)));
      return (await Promise.all(chunks)).flat();
    },
    workers: () => [...threads].map((t) => t.worker),
    ready: () =>
      new Promise<void>((resolve) => {
        readyWaiters.add(resolve);
        settleReadyWaiters();
      }),
    async close() {
      closed = true;
      await Promise.all([...threads].map((t) => t.worker.terminate()));
    },
  };
}
