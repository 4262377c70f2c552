// X509-SVID validation (X509-SVID §5; our notes: shared/SPIFFE.md §2.4): leaf checks, the bundle of
// the leaf's own trust domain (never a pool of several), then RFC 5280 path validation with
// signatures checked by OpenSSL through crypto.X509Certificate.
import type { KeyObject, X509Certificate } from 'node:crypto';
import { EmblemError, errorMessage } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from '../spiffe-id.js';
import { hasKeyUsage, openX509, parseCertificate, type ParsedCertificate } from './cert-parse.js';
import { nameConstraintViolation } from './name-constraints.js';

export type X509SvidFailure =
  | 'malformed'
  | 'empty_chain'
  | 'chain_too_long'
  | 'uri_san_count'
  | 'invalid_spiffe_id'
  | 'root_path'
  | 'leaf_is_ca'
  | 'leaf_key_usage'
  | 'no_bundle'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_signature'
  | 'untrusted'
  | 'not_a_ca'
  | 'path_length'
  | 'name_constraints'
  | 'unhandled_critical_extension';

export class X509SvidError extends EmblemError {
  readonly reason: X509SvidFailure;

  constructor(reason: X509SvidFailure, message: string, options?: { cause?: unknown }) {
    super('invalid_argument', `X509-SVID rejected: ${message}`, options);
    this.name = 'X509SvidError';
    this.reason = reason;
  }
}

export interface VerifiedX509Svid {
  spiffeId: SpiffeId;
  leaf: X509Certificate;
  /** The leaf's notAfter, unix seconds. */
  notAfter: number;
  /** Earliest notAfter on the verified path (leaf, intermediates, anchor): the result holds until then. */
  pathNotAfter: number;
  /** The verified path as DER: leaf, the intermediates used, then the trust anchor. */
  path: Buffer[];
}

/** Longest chain we look at; real SVID chains have 1-3 certificates. */
export const MAX_CHAIN_LENGTH = 16;

interface Node {
  readonly der: Buffer;
  readonly p: ParsedCertificate;
  readonly x: X509Certificate;
  readonly label: string;
}

function load(der: Buffer, label: string): Node {
  try {
    return { der, p: parseCertificate(der, label), x: openX509(der, label), label };
  } catch (err) {
    throw new X509SvidError('malformed', `${label} is malformed: ${errorMessage(err)}`, { cause: err });
  }
}

// X509Certificate.publicKey decodes the key anew on every access; decode each certificate's once.
const publicKeys = new WeakMap<X509Certificate, KeyObject>();

function publicKeyOf(node: Node): KeyObject {
  let key = publicKeys.get(node.x);
  if (!key) {
    try {
      key = node.x.publicKey;
    } catch (err) {
      throw new X509SvidError('malformed', `${node.label} has a public key that cannot be decoded`, { cause: err });
    }
    publicKeys.set(node.x, key);
  }
  return key;
}

function signedBy(child: Node, ca: Node): boolean {
  const key = publicKeyOf(ca);
  try {
    return child.x.verify(key);
  } catch {
    return false;
  }
}

// Bundles are long-lived and shared between calls, so their parsed form is kept with the buffer
// (with a private copy of the bytes, compared on every hit, in case the buffer is reused).
const anchorCache = new WeakMap<Buffer, Node>();

function loadAnchor(der: Buffer, label: string): Node {
  let node = anchorCache.get(der);
  if (!node || !node.der.equals(der)) {
    node = load(Buffer.from(der), label);
    anchorCache.set(der, node);
  }
  return { ...node, label };
}

/** The SPIFFE ID in a certificate's single URI SAN (any path, so CA certificates work too). */
export function spiffeIdOfCertificate(der: Buffer): SpiffeId {
  return spiffeIdOf(load(der, 'certificate'));
}

function spiffeIdOf(node: Node): SpiffeId {
  const n = node.p.uris.length;
  if (n !== 1) throw new X509SvidError('uri_san_count', `${node.label} has ${n} URI SANs (exactly 1 required)`);
  try {
    return parseSpiffeId(node.p.uris[0]!);
  } catch (err) {
    throw new X509SvidError('invalid_spiffe_id', `${node.label} URI SAN is not a valid SPIFFE ID: ${errorMessage(err)}`, { cause: err });
  }
}

const iso = (s: number): string => new Date(s * 1000).toISOString();

function checkCommon(node: Node, nowSeconds: number): void {
  if (nowSeconds > node.p.notAfter) throw new X509SvidError('expired', `${node.label} expired at ${iso(node.p.notAfter)}`);
  if (nowSeconds < node.p.notBefore) throw new X509SvidError('not_yet_valid', `${node.label} is not yet valid (valid from ${iso(node.p.notBefore)})`);
  if (node.p.unhandledCritical.length > 0) {
    throw new X509SvidError('unhandled_critical_extension', `${node.label} has unsupported critical extension ${node.p.unhandledCritical[0]}`);
  }
}

function checkLeaf(leaf: Node): SpiffeId {
  const id = spiffeIdOf(leaf);
  if (id.path === '') throw new X509SvidError('root_path', `leaf SPIFFE ID ${id.uri} has no path (a leaf needs a non-root path)`);
  if (leaf.p.basicConstraints?.ca) throw new X509SvidError('leaf_is_ca', 'leaf is a CA (basicConstraints cA=true)');
  if (leaf.p.keyUsage === undefined) throw new X509SvidError('leaf_key_usage', 'leaf has no keyUsage extension');
  if (!hasKeyUsage(leaf.p, 'digitalSignature')) throw new X509SvidError('leaf_key_usage', 'leaf keyUsage lacks digitalSignature');
  if (hasKeyUsage(leaf.p, 'keyCertSign')) throw new X509SvidError('leaf_key_usage', 'leaf keyUsage has keyCertSign');
  if (hasKeyUsage(leaf.p, 'cRLSign')) throw new X509SvidError('leaf_key_usage', 'leaf keyUsage has cRLSign');
  return id;
}

/** Checks `ca` may sign the certificate below it, given the path built so far (leaf first). */
function checkIssuerCa(ca: Node, below: Node[], nowSeconds: number): void {
  checkCommon(ca, nowSeconds);
  if (!ca.p.basicConstraints?.ca) throw new X509SvidError('not_a_ca', `${ca.label} is not a CA (basicConstraints cA is not true)`);
  if (ca.p.keyUsage !== undefined && !hasKeyUsage(ca.p, 'keyCertSign')) {
    throw new X509SvidError('not_a_ca', `${ca.label} keyUsage lacks keyCertSign`);
  }
  const pathLen = ca.p.basicConstraints.pathLen;
  if (pathLen !== undefined) {
    // RFC 5280 §4.2.1.9: self-issued intermediates do not count.
    const intermediates = below.slice(1).filter((n) => !n.p.subjectDer.equals(n.p.issuerDer)).length;
    if (intermediates > pathLen) {
      throw new X509SvidError('path_length', `${ca.label} allows ${pathLen} intermediate CA(s) below it, the path has ${intermediates}`);
    }
  }
  if (ca.p.nameConstraints) {
    for (const n of below) {
      const why = nameConstraintViolation(ca.p.nameConstraints, n.p);
      if (why) throw new X509SvidError('name_constraints', `${n.label} violates the name constraints of ${ca.label}: ${why}`);
    }
  }
}

/** Same name (byte-equal, as Go's CertPool and OpenSSL's lookup do) and no key identifier contradiction. */
function mayHaveIssued(child: Node, ca: Node): boolean {
  if (!child.p.issuerDer.equals(ca.p.subjectDer)) return false;
  return !(child.p.akid && ca.p.skid && !child.p.akid.equals(ca.p.skid));
}

/**
 * Verifies an X509-SVID chain (leaf first, then intermediates) against the bundle of the leaf's
 * trust domain. Every failure is an X509SvidError naming the reason.
 */
export function verifyX509SvidChain(
  chain: readonly Buffer[],
  bundleFor: (trustDomain: string) => readonly Buffer[] | undefined,
  now: number = Date.now(),
): VerifiedX509Svid {
  if (chain.length === 0) throw new X509SvidError('empty_chain', 'certificate chain is empty');
  if (chain.length > MAX_CHAIN_LENGTH) throw new X509SvidError('chain_too_long', `chain has ${chain.length} certificates (max ${MAX_CHAIN_LENGTH})`);
  const nowSeconds = Math.floor(now / 1000);
  const leaf = load(chain[0]!, 'leaf');
  const spiffeId = checkLeaf(leaf);
  checkCommon(leaf, nowSeconds);

  const bundle = bundleFor(spiffeId.trustDomain);
  if (!bundle || bundle.length === 0) throw new X509SvidError('no_bundle', `no bundle for trust domain "${spiffeId.trustDomain}"`);
  const anchors = bundle.map((der, i) => loadAnchor(der, `bundle certificate ${i} of "${spiffeId.trustDomain}"`));
  const unused = chain.slice(1).map((der, i) => load(der, `intermediate ${i + 1}`));

  const path: Node[] = [leaf];
  let cur = leaf;
  for (;;) {
    let signatureFailure: string | undefined;
    const tryIssuer = (ca: Node): boolean => {
      if (!mayHaveIssued(cur, ca)) return false;
      if (!signedBy(cur, ca)) {
        signatureFailure ??= `${cur.label} signature does not verify with the key of ${ca.label}`;
        return false;
      }
      checkIssuerCa(ca, path, nowSeconds);
      return true;
    };
    const anchor = anchors.find(tryIssuer);
    if (anchor) {
      path.push(anchor);
      break;
    }
    const idx = unused.findIndex(tryIssuer);
    if (idx < 0) {
      if (signatureFailure) throw new X509SvidError('bad_signature', signatureFailure);
      throw new X509SvidError(
        'untrusted',
        `${cur.label} (issuer "${cur.x.issuer.split('\n').join(', ')}") does not chain to the bundle for trust domain "${spiffeId.trustDomain}"`,
      );
    }
    cur = unused.splice(idx, 1)[0]!;
    path.push(cur);
  }

  return {
    spiffeId,
    leaf: leaf.x,
    notAfter: leaf.p.notAfter,
    pathNotAfter: Math.min(...path.map((n) => n.p.notAfter)),
    path: path.map((n) => n.der),
  };
}
