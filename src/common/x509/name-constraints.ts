// RFC 5280 §4.2.1.10 name constraints for the two name forms SPIFFE uses: URI (constrained by the
// URI's host, i.e. the trust domain, X509-SVID §4.2) and DNS. A CA constraining any other form is
// refused rather than half-enforced.
import type { GeneralNameConstraint, NameConstraints, ParsedCertificate } from './cert-parse.js';

/** The host of a URI with an authority ("scheme://[userinfo@]host[:port]..."), lowercased; else undefined. */
function uriHost(uri: string): string | undefined {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  if (!m) return undefined;
  let authority = m[1]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (!authority.startsWith('[')) {
    const colon = authority.indexOf(':');
    if (colon >= 0) authority = authority.slice(0, colon);
  }
  return authority === '' ? undefined : authority.toLowerCase();
}

function uriMatches(uri: string, constraint: string): boolean {
  const host = uriHost(uri);
  if (host === undefined) return false;
  const c = constraint.toLowerCase();
  // ".example.org" matches hosts below example.org; "example.org" matches that host only.
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

function dnsMatches(name: string, constraint: string): boolean {
  const n = name.toLowerCase();
  const c = constraint.toLowerCase();
  if (c === '') return true;
  if (c.startsWith('.')) return n.endsWith(c);
  return n === c || n.endsWith('.' + c);
}

function check(names: string[], type: 'uri' | 'dns', nc: NameConstraints): string | undefined {
  const matches = type === 'uri' ? uriMatches : dnsMatches;
  const permitted = nc.permitted.filter((p) => p.type === type);
  const excluded = nc.excluded.filter((p) => p.type === type);
  for (const name of names) {
    if (permitted.length > 0 && !permitted.some((p) => matches(name, p.value))) return `${type.toUpperCase()} name ${name} is not permitted`;
    const hit = excluded.find((p) => matches(name, p.value));
    if (hit) return `${type.toUpperCase()} name ${name} is excluded by ${JSON.stringify(hit.value)}`;
  }
  return undefined;
}

const unsupported = (list: GeneralNameConstraint[]): GeneralNameConstraint | undefined =>
  list.find((c) => c.type !== 'uri' && c.type !== 'dns');

/** Undefined when `cert`'s SAN names satisfy the constraints, else the reason they do not. */
export function nameConstraintViolation(nc: NameConstraints, cert: ParsedCertificate): string | undefined {
  const other = unsupported(nc.permitted) ?? unsupported(nc.excluded);
  if (other) return `name constraints on name form ${other.type.slice(6)} are not supported`;
  return check(cert.uris, 'uri', nc) ?? check(cert.dnsNames, 'dns', nc);
}
