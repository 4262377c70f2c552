// Selectors are "type:value" pairs (e.g. "unix:uid:1000" = type "unix", value "uid:1000").
import { invalidArgument } from './errors.js';

export interface Selector {
  type: string;
  value: string;
}

const TYPE_RE = /^[a-z0-9_-]{1,64}$/;
const MAX_VALUE_BYTES = 1024;

export function parseSelector(text: string): Selector {
  const i = text.indexOf(':');
  if (i <= 0) throw invalidArgument(`selector ${JSON.stringify(text)} must have the form type:value`);
  return validateSelector({ type: text.slice(0, i), value: text.slice(i + 1) });
}

export function validateSelector(s: Selector): Selector {
  if (!TYPE_RE.test(s.type)) throw invalidArgument(`selector type ${JSON.stringify(s.type)} must match [a-z0-9_-]{1,64}`);
  if (s.value.length === 0) throw invalidArgument(`selector ${s.type}: has an empty value`);
  if (Buffer.byteLength(s.value) > MAX_VALUE_BYTES) throw invalidArgument(`selector value is longer than ${MAX_VALUE_BYTES} bytes`);
  return { type: s.type, value: s.value };
}

export const formatSelector = (s: Selector): string => `${s.type}:${s.value}`;

/** Canonical key set of a selector list, for set comparisons. */
export function selectorKeys(selectors: readonly Selector[]): Set<string> {
  return new Set(selectors.map(formatSelector));
}

/** True when every selector of `subset` is in `superset`. */
export function isSubset(subset: readonly Selector[], superset: ReadonlySet<string>): boolean {
  for (const s of subset) if (!superset.has(formatSelector(s))) return false;
  return true;
}
