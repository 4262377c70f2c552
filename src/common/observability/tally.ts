// Hot-path counting for labelled prom-client metrics. prom-client hashes the label object on every
// inc()/dec() (~10 µs); a Workload API agent counts per message and per stream, and 1,000 streams
// ending at once spent ~20 ms in it. Here an increment is a Map update, and the metric is brought
// up to date when it is collected (at scrape time), so what Prometheus reads is exact.

export class Tally<L extends string> {
  private readonly pending = new Map<string, { labels: Record<L, string>; delta: number }>();

  add(labels: Record<L, string>, delta = 1): void {
    const key = Object.values(labels).join('\u0000');
    const slot = this.pending.get(key);
    if (slot) slot.delta += delta;
    else this.pending.set(key, { labels, delta });
  }

  /** Hands every accumulated delta to `apply` (from a metric's collect()) and starts again from zero. */
  drain(apply: (labels: Record<L, string>, delta: number) => void): void {
    for (const { labels, delta } of this.pending.values()) apply(labels, delta);
    this.pending.clear();
  }
}
