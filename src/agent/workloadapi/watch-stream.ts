// Serves one server-streaming Workload API call from a changing source: the full current view at
// once, then a fresh view after every change that alters it. Updates never queue: each stream keeps
// only the latest unsent view and writes it once the previous message has left (write callback and
// 'drain'), so a client that stops reading costs one pending message, not one per change
// (ENGINEERING-NOTES §1.6). 'cancelled' and 'close' release the subscription and listeners,
// because 'drain' never fires on a cancelled call.
import { status, type ServerWritableStream } from '@grpc/grpc-js';
import { toGrpcStatus } from '../../common/grpc/status.js';
import { errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';

export interface StreamView<T> {
  message: T;
  /** Equal fingerprints mean equal messages: an unchanged view is not sent again. */
  fingerprint: string;
}

export interface WatchStreamOptions<T> {
  call: ServerWritableStream<unknown, T>;
  /** Registers a change listener; returns the unsubscribe function. */
  subscribe: (listener: () => void) => () => void;
  /**
   * The caller's current view; null when there is nothing to send yet. Throwing ends the stream with
   * that error's status. `known` is the fingerprint of the view the client has or is about to get.
   */
  build: (known: string | undefined) => Promise<StreamView<T> | null>;
  logger: Logger;
  /** Called once when the stream is over, with the status it ended with (CANCELLED when the client left). */
  onEnd: (code: status) => void;
  /** Called for every message handed to the transport. */
  onMessage?: () => void;
}

/** Starts serving; returns at once. All resources are released when the call ends, however it ends. */
export function serveWatchStream<T>(options: WatchStreamOptions<T>): void {
  const { call, build, logger } = options;
  let over = false;
  let unsubscribe: (() => void) | undefined;
  let building = false;
  let dirty = true;
  let pending: StreamView<T> | undefined;
  let lastWritten: string | undefined;
  let writeInFlight = false;
  let needDrain = false;

  const release = (code: status): void => {
    if (over) return;
    over = true;
    pending = undefined;
    unsubscribe?.();
    unsubscribe = undefined;
    call.off('cancelled', onCancelled);
    call.off('close', onClosed);
    call.off('drain', onDrain);
    options.onEnd(code);
  };
  const onCancelled = (): void => release(status.CANCELLED);
  // 'close' without 'cancelled' means the stream ended on our side or the transport went away.
  const onClosed = (): void => release(status.CANCELLED);
  const onDrain = (): void => {
    needDrain = false;
    flush();
  };

  const flush = (): void => {
    if (over || writeInFlight || needDrain || !pending) return;
    const view = pending;
    pending = undefined;
    lastWritten = view.fingerprint;
    writeInFlight = true;
    options.onMessage?.();
    const accepted = call.write(view.message, () => {
      writeInFlight = false;
      flush();
    });
    if (!accepted) {
      needDrain = true;
      call.once('drain', onDrain);
    }
  };

  const offer = (view: StreamView<T>): void => {
    // Supersedes any unsent view; a view equal to what the client already has needs no message.
    pending = view.fingerprint === lastWritten ? undefined : view;
    flush();
  };

  const fail = (err: unknown): void => {
    if (over) return;
    const st = toGrpcStatus(err);
    if (st.code === status.INTERNAL) logger.warn({ err: errorMessage(err) }, 'workload API stream failed');
    release(st.code);
    call.emit('error', st);
  };

  const refresh = async (): Promise<void> => {
    dirty = true;
    if (building) return;
    building = true;
    try {
      while (dirty && !over) {
        dirty = false;
        const view = await build(pending?.fingerprint ?? lastWritten);
        if (over) return;
        if (view) offer(view);
      }
    } catch (err) {
      fail(err);
    } finally {
      building = false;
    }
  };

  call.on('cancelled', onCancelled);
  call.on('close', onClosed);
  if (call.cancelled) {
    release(status.CANCELLED);
    return;
  }
  // Subscribe before the first build so that no change between the two is missed.
  unsubscribe = options.subscribe(() => void refresh());
  void refresh();
}
