// Time and timers behind an interface, so that rotation and reconnection schedules can be tested
// with a clock the test moves by hand.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `delayMs`; the timer does not keep the process alive. */
  setTimer(fn: () => void, delayMs: number): TimerHandle;
}

/** setTimeout's limit: longer delays would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, delayMs) {
    const t = setTimeout(fn, Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock that only moves when told to (tests). Timers due at or before the new time run in order. */
export class ManualClock implements Clock {
  private timers: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  private seq = 0;

  constructor(private current = 1_700_000_000_000) {}

  now(): number {
    return this.current;
  }

  setTimer(fn: () => void, delayMs: number): TimerHandle {
    const timer = { at: this.current + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of live timers. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** When the next live timer is due, if any. */
  nextDue(): number | undefined {
    const live = this.timers.filter((t) => !t.cancelled);
    return live.length === 0 ? undefined : Math.min(...live.map((t) => t.at));
  }

  advance(ms: number): void {
    this.set(this.current + ms);
  }

  set(time: number): void {
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const due = this.timers.filter((t) => t.at <= time).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.current = Math.max(this.current, due.at);
      due.cancelled = true;
      due.fn();
    }
    this.current = Math.max(this.current, time);
  }
}
