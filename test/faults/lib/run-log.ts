// What every process of a fault-test run wrote to its logs, and the secrets seen during the run, so
// that secrets-logs.test.ts can grep the whole run (mocha loads test/faults files in name order, so
// it runs after the crash-, disk- and outage- files that feed this registry).
import { createPrivateKey } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openAgentStore } from '../../../src/agent/storage/agent-store.js';

export interface OutputSource {
  name: string;
  /** The output so far (read at check time, so it includes everything up to then). */
  text(): string;
}

const sources: OutputSource[] = [];
/** pattern -> what it is */
const secrets = new Map<string, string>();

/** Registers a log source: a child process's output, or an in-process log capture. */
export function recordOutput(name: string, text: () => string): void {
  sources.push({ name, text });
}

/** Remembers a value that must never appear in a log line (join token, JWT, ...). */
export function recordSecret(value: string, label = 'secret'): void {
  if (value.length >= 8) secrets.set(value, label);
}

const middle = (s: string, n: number): string => s.slice(Math.floor((s.length - n) / 2), Math.floor((s.length - n) / 2) + n);

/**
 * Remembers a private key (PKCS#8 DER) by forms a leak would take: the whole DER in base64,
 * base64url and hex, and the private scalar alone in those encodings, also as windows at every byte
 * alignment (so it is found inside a larger base64 blob too). Public parts are never patterns.
 */
export function recordPrivateKey(pkcs8: Buffer, label: string): void {
  const jwk = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  const d = Buffer.from(jwk.d!, 'base64url');
  for (const v of [pkcs8.toString('base64'), pkcs8.toString('base64url'), pkcs8.toString('hex'), jwk.d!, d.toString('base64'), d.toString('hex')]) {
    recordSecret(v, label);
  }
  for (let shift = 0; shift < 3; shift++) {
    const b64 = d.subarray(shift).toString('base64');
    recordSecret(middle(b64, 24), label);
    recordSecret(middle(b64, 24).replace(/\+/g, '-').replace(/\//g, '_'), label);
  }
}

/** Records every key file of a server data directory (keys/*.pem; none if it has no key dir). */
export function recordServerKeys(dataDir: string): number {
  const dir = join(dataDir, 'keys');
  let n = 0;
  if (!existsSync(dir)) return 0;
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.pem'))) {
    const pem = readFileSync(join(dir, name), 'utf8');
    recordPrivateKey(createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' }), `server key ${name}`);
    n++;
  }
  return n;
}

/** Records the agent key and every workload SVID key of a stopped agent's data directory. */
export async function recordAgentKeys(dataDir: string, trustDomain: string): Promise<number> {
  const store = await openAgentStore({ dataDir, trustDomain });
  try {
    const snapshot = await store.load();
    let n = 0;
    if (snapshot.agentSvid) {
      recordPrivateKey(snapshot.agentSvid.privateKeyPkcs8, 'agent SVID key');
      n++;
    }
    for (const i of snapshot.identities) {
      recordPrivateKey(i.privateKeyPkcs8, `workload SVID key of entry ${i.entryId}`);
      n++;
    }
    return n;
  } finally {
    await store.close();
  }
}

export function outputSources(): readonly OutputSource[] {
  return sources;
}

export interface Leak {
  source: string;
  what: string;
  excerpt: string;
}

const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
const JWT = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*/;

/** Everything in `text` that is a private key, a JWT or a recorded secret. */
export function findLeaks(source: string, text: string): Leak[] {
  const leaks: Leak[] = [];
  const excerpt = (at: number, len: number) => text.slice(Math.max(0, at - 120), at + Math.min(len, 40) + 40).replace(/\s+/g, ' ');
  for (const [re, what] of [
    [PEM_PRIVATE_KEY, 'a PEM private key'],
    [JWT, 'a JWT'],
  ] as const) {
    const m = re.exec(text);
    if (m) leaks.push({ source, what, excerpt: excerpt(m.index, m[0].length) });
  }
  for (const [value, label] of secrets) {
    const at = text.indexOf(value);
    if (at >= 0) leaks.push({ source, what: label, excerpt: excerpt(at, value.length) });
  }
  return leaks;
}

export function secretCount(): number {
  return secrets.size;
}
