// Durations in configs and flags: a number of seconds ("3600") or a Go-style string ("1h30m", "45s").
import { invalidArgument } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
const PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** Parses a duration to whole seconds (rounded down, at least 0). */
export function parseDurationSeconds(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw invalidArgument(`${what} must be a non-negative number of seconds`);
    return Math.floor(input);
  }
  const text = input.trim();
  if (/^\d+$/.test(text)) return Number(text);
  let total = 0;
  PART_RE.lastIndex = 0;
  let consumed = 0;
  for (let m = PART_RE.exec(text); m; m = PART_RE.exec(text)) {
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    consumed = PART_RE.lastIndex;
  }
  if (text.length === 0 || consumed !== text.length) {
    throw invalidArgument(`${what} ${JSON.stringify(input)} is not a duration (examples: 600, 90s, 5m, 1h30m, 7d)`);
  }
  return Math.floor(total);
}
