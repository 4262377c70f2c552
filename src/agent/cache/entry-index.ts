// The authorised entries, indexed by selector so that finding the entries of a workload does not
// scan every entry. Each entry is filed under one "anchor" selector, the one shared by the fewest
// entries when it was added (any of its selectors would be correct, since a match needs all of
// them). A lookup visits the entries anchored at the workload's selectors and checks each one, so a
// selector that every entry carries (say unix:gid:0) does not make every lookup touch every entry.
import type { AgentEntry } from './types.js';
import { formatSelector } from '../../common/selectors.js';

interface Indexed {
  entry: AgentEntry;
  /** Distinct selector keys ("type:value"). */
  keys: string[];
  anchor: string | undefined;
}

/** Workload API order: the default identity first (oldest createdAt, then lowest id). */
export function compareEntries(a: AgentEntry, b: AgentEntry): number {
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A frozen copy, so that entries handed to the Workload API can never be changed under it. */
export function freezeEntry(e: AgentEntry): AgentEntry {
  return Object.freeze({
    ...e,
    selectors: Object.freeze(e.selectors.map((s) => Object.freeze({ type: s.type, value: s.value }))) as AgentEntry['selectors'],
    federatesWith: Object.freeze([...e.federatesWith]) as string[],
  });
}

export class EntryIndex {
  private readonly byId = new Map<string, Indexed>();
  /** How many entries carry each selector (to pick rare anchors). */
  private readonly selectorCounts = new Map<string, number>();
  private readonly byAnchor = new Map<string, Set<string>>();

  get size(): number {
    return this.byId.size;
  }

  get(id: string): AgentEntry | undefined {
    return this.byId.get(id)?.entry;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  all(): AgentEntry[] {
    return [...this.byId.values()].map((i) => i.entry);
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** Adds or replaces an entry (the caller passes a frozen entry). */
  set(entry: AgentEntry): void {
    this.delete(entry.id);
    const keys = [...new Set(entry.selectors.map(formatSelector))];
    let anchor: string | undefined;
    let best = Infinity;
    for (const key of keys) {
      const count = this.selectorCounts.get(key) ?? 0;
      this.selectorCounts.set(key, count + 1);
      if (count < best) {
        best = count;
        anchor = key;
      }
    }
    this.byId.set(entry.id, { entry, keys, anchor });
    if (anchor === undefined) return;
    let ids = this.byAnchor.get(anchor);
    if (!ids) this.byAnchor.set(anchor, (ids = new Set()));
    ids.add(entry.id);
  }

  delete(id: string): boolean {
    const old = this.byId.get(id);
    if (!old) return false;
    this.byId.delete(id);
    for (const key of old.keys) {
      const count = (this.selectorCounts.get(key) ?? 1) - 1;
      if (count === 0) this.selectorCounts.delete(key);
      else this.selectorCounts.set(key, count);
    }
    if (old.anchor !== undefined) {
      const ids = this.byAnchor.get(old.anchor);
      ids?.delete(id);
      if (ids?.size === 0) this.byAnchor.delete(old.anchor);
    }
    return true;
  }

  clear(): void {
    this.byId.clear();
    this.selectorCounts.clear();
    this.byAnchor.clear();
  }

  /**
   * Entries all of whose selectors are in `workloadSelectors`, default first. An entry without
   * selectors matches nothing: the server never authorises one, and matching every workload would
   * be the unsafe reading.
   */
  match(workloadSelectors: ReadonlySet<string>): AgentEntry[] {
    const out: AgentEntry[] = [];
    for (const key of workloadSelectors) {
      const ids = this.byAnchor.get(key);
      if (!ids) continue;
      for (const id of ids) {
        const indexed = this.byId.get(id)!;
        if (indexed.keys.every((k) => workloadSelectors.has(k))) out.push(indexed.entry);
      }
    }
    return out.sort(compareEntries);
  }
}
