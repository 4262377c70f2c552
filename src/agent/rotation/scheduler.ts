// One timer for many deadlines: keys with due times in a binary min-heap, and a single clock timer
// armed for the earliest one. Rescheduling or cancelling a key is O(log n) (stale heap nodes are
// skipped when they surface), so tens of thousands of SVIDs cost one timer.
import { systemClock, type Clock, type TimerHandle } from './clock.js';

interface Node {
  key: string;
  due: number;
  seq: number;
}

export class DueScheduler {
  private heap: Node[] = [];
  private readonly current = new Map<string, { due: number; seq: number }>();
  private seq = 0;
  private timer: TimerHandle | undefined;
  private armedFor = Infinity;
  private stopped = false;

  /** `onDue` receives every key due at once, in due order. */
  constructor(
    private readonly onDue: (keys: string[]) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  get size(): number {
    return this.current.size;
  }

  dueAt(key: string): number | undefined {
    return this.current.get(key)?.due;
  }

  /** Sets (or moves) the due time of `key`, in clock milliseconds. */
  schedule(key: string, due: number): void {
    if (this.stopped) return;
    const node = { key, due, seq: this.seq++ };
    this.current.set(key, { due, seq: node.seq });
    this.push(node);
    if (due < this.armedFor) this.arm();
  }

  cancel(key: string): void {
    this.current.delete(key);
  }

  clear(): void {
    this.current.clear();
    this.heap = [];
    this.disarm();
  }

  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private arm(): void {
    this.disarm();
    const top = this.peekLive();
    if (!top) return;
    this.armedFor = top.due;
    this.timer = this.clock.setTimer(() => this.fire(), top.due - this.clock.now());
  }

  private disarm(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.clock.now();
    const due: string[] = [];
    for (let top = this.peekLive(); top && top.due <= now; top = this.peekLive()) {
      this.pop();
      this.current.delete(top.key);
      due.push(top.key);
    }
    if (due.length > 0) this.onDue(due);
    if (!this.timer && !this.stopped) this.arm();
  }

  /** The earliest node that is still current, dropping stale ones on the way. */
  private peekLive(): Node | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      const cur = this.current.get(top.key);
      if (cur && cur.seq === top.seq) return top;
      this.pop();
    }
    return undefined;
  }

  private push(node: Node): void {
    const h = this.heap;
    h.push(node);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.due <= node.due) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = node;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && h[r]!.due < h[l]!.due ? r : l;
      if (h[child]!.due >= last.due) break;
      h[i] = h[child]!;
      i = child;
    }
    h[i] = last;
  }
}
