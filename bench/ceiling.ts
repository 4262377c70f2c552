// The machine's raw ECDSA P-256 speed from `openssl speed`: the ceiling for "verify a CSR, sign a
// leaf" is one verify plus one sign per SVID, so ceiling = 1 / (1/sign + 1/verify).
import { execFileSync } from 'node:child_process';

export interface EcdsaCeiling {
  /** Signatures per second (one core). */
  sign: number;
  /** Verifications per second (one core). */
  verify: number;
  /** Sign+verify pairs per second. */
  ceiling: number;
}

/** Parses the "256 bits ecdsa (nistp256)" row of `openssl speed ecdsap256` output. */
export function parseOpensslSpeed(output: string): EcdsaCeiling {
  const m = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(output);
  if (!m) throw new Error('could not find the nistp256 row in `openssl speed` output');
  const sign = Number(m[1]);
  const verify = Number(m[2]);
  return { sign, verify, ceiling: 1 / (1 / sign + 1 / verify) };
}

/** Runs `openssl speed -seconds N ecdsap256` (about 2N seconds: N to sign, N to verify). */
export function measureEcdsaCeiling(seconds: number): EcdsaCeiling {
  const out = execFileSync('openssl', ['speed', '-seconds', String(Math.max(1, Math.round(seconds))), 'ecdsap256'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: (seconds * 2 + 30) * 1000,
  });
  return parseOpensslSpeed(out);
}
