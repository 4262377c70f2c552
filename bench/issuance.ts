// Issuance throughput: what the server does per X509-SVID request on one core, sequentially:
// parse and verify a CSR (proof of possession), then mint and sign the leaf. Compared with the
// machine's ECDSA ceiling (one verify + one sign per SVID, from `openssl speed`).
import { sign, verify } from 'node:crypto';
import { createSelfSignedCa } from '../src/common/x509/ca.js';
import { createCsr, parseCsr } from '../src/common/x509/csr.js';
import { prepareIssuer } from '../src/common/x509/issuer.js';
import { generateKeyPair } from '../src/common/x509/keys.js';
import { mintX509Svid } from '../src/common/x509/leaf.js';
import { importSpki, parseSpki } from '../src/common/x509/spki.js';
import { measureEcdsaCeiling } from './ceiling.js';
import type { BenchOptions, Figure } from './run.js';

const TARGET_RATIO = 0.5;

/**
 * Runs `op` sequentially for about `seconds` of wall time (after a short warm-up) and returns
 * operations per CPU-second of this process. `openssl speed` also counts CPU time, so the ratio
 * stays meaningful when other processes share the machine.
 */
function rate(seconds: number, op: (i: number) => void): number {
  const warmEnd = performance.now() + Math.max(100, Math.min(300, seconds * 250));
  let i = 0;
  while (performance.now() < warmEnd) op(i++);
  const cpuStart = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  let n = 0;
  // Check the clock every 64 operations so timing stays out of the measured loop.
  while (performance.now() < end) {
    for (let k = 0; k < 64; k++) op(i++);
    n += 64;
  }
  const cpu = process.cpuUsage(cpuStart);
  return n / ((cpu.user + cpu.system) / 1e6);
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const seconds = opts.quick ? 0.3 : 2;
  const caKeys = generateKeyPair();
  const issuer = prepareIssuer(createSelfSignedCa({ trustDomain: 'example.org', keyPair: caKeys, ttlSeconds: 86400 }), caKeys.privateKey);
  // Distinct workload keys, as in a fleet re-key. Every parseCsr decodes its key from bytes, so
  // each operation pays for setting up a key, exactly as the server does per request.
  const csrs = Array.from({ length: 1000 }, () => createCsr(generateKeyPair()));
  const spiffeId = 'spiffe://example.org/ns/default/sa/web';
  const pick = (i: number): Buffer => csrs[i % csrs.length]!;

  const issuance = rate(seconds, (i) => {
    const { spkiDer } = parseCsr(pick(i));
    mintX509Svid(issuer, { spiffeId, publicKey: spkiDer, ttlSeconds: 3600 });
  });
  const csrOnly = rate(seconds / 2, (i) => parseCsr(pick(i)));
  const { spkiDer } = parseCsr(pick(0));
  const mintOnly = rate(seconds / 2, () => mintX509Svid(issuer, { spiffeId, publicKey: spkiDer, ttlSeconds: 3600 }));
  // Where the time goes: Node's sign+verify on keys OpenSSL has already set up, versus setting up
  // a key it has not seen (what every CSR costs on top of the verify).
  const spkis = csrs.map((c) => parseSpki(parseCsr(c).spkiDer));
  const data = Buffer.alloc(300, 1);
  const sig = sign('sha256', data, caKeys.privateKey);
  const nodeWarmPair = rate(seconds / 2, () => {
    verify('sha256', data, caKeys.publicKey, sig);
    sign('sha256', data, caKeys.privateKey);
  });
  const keyImport = rate(seconds / 2, (i) => importSpki(spkis[i % spkis.length]!));

  const figures: Figure[] = [
    { name: 'x509_svid_issuance_per_core', value: Math.round(issuance), unit: 'SVIDs/CPU-s' },
    { name: 'csr_parse_verify_per_core', value: Math.round(csrOnly), unit: 'CSRs/CPU-s' },
    { name: 'x509_svid_mint_per_core', value: Math.round(mintOnly), unit: 'SVIDs/CPU-s' },
    { name: 'node_p256_sign_plus_verify_warm_key', value: Math.round(nodeWarmPair), unit: 'pairs/CPU-s' },
    { name: 'node_p256_public_key_import', value: Math.round(keyImport), unit: 'keys/CPU-s' },
  ];
  try {
    const c = measureEcdsaCeiling(opts.quick ? 1 : 2);
    const ratio = issuance / c.ceiling;
    figures.push(
      { name: 'openssl_ecdsa_p256_sign', value: Math.round(c.sign), unit: 'ops/CPU-s' },
      { name: 'openssl_ecdsa_p256_verify', value: Math.round(c.verify), unit: 'ops/CPU-s' },
      { name: 'ecdsa_p256_ceiling_sign_plus_verify', value: Math.round(c.ceiling), unit: 'SVIDs/CPU-s' },
      {
        name: 'x509_svid_issuance_ratio_to_ceiling',
        value: Math.round(ratio * 1000) / 1000,
        unit: 'ratio',
        target: `>= ${TARGET_RATIO}`,
        pass: ratio >= TARGET_RATIO,
      },
    );
  } catch (err) {
    figures.push({ name: 'ecdsa_p256_ceiling_sign_plus_verify', value: NaN, unit: `unavailable: ${(err as Error).message}` });
  }
  return figures;
}
