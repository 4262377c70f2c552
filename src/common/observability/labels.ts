// Label values that come from data rather than from code (attestor names, method names, status
// codes) go through a bounded set, so a bug or a hostile peer cannot create unbounded series.

export const OVERFLOW_LABEL = '_other';

/** Returns the value itself for the first `max` distinct values seen, then OVERFLOW_LABEL. */
export function boundedLabel(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (seen.has(value)) return value;
    if (seen.size >= max) return OVERFLOW_LABEL;
    seen.add(value);
    return value;
  };
}

/**
 * Calls a gauge source at scrape time. A throwing source, or one returning a non-number, reads as
 * NaN (Prometheus' "unknown") instead of failing the whole scrape.
 */
export function readSource(source: () => number): number {
  try {
    const value = source();
    return typeof value === 'number' ? value : NaN;
  } catch {
    return NaN;
  }
}
