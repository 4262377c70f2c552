// The unary JWT RPCs of the Workload API (SPIFFE.md §5.4): FetchJWTSVID and ValidateJWTSVID.
import type { AgentEntry, WorkloadIdentitySource } from '../cache/types.js';
import type { JwtAuthority } from '../../common/trust-bundle.js';
import { errorMessage, invalidArgument, isEmblemError, permissionDenied } from '../../common/errors.js';
import { parseSpiffeId } from '../../common/spiffe-id.js';
import { validateJwtSvid } from '../../common/jwt-svid.js';
import { withUniqueHints } from './responses.js';
import { toStruct, type ProtoStruct } from './struct.js';

export interface JwtSvidRequest {
  audience: string[];
  spiffe_id: string;
}

export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}

export interface JwtSvidResponse {
  svids: JwtSvidMessage[];
}

export interface ValidateJwtSvidRequest {
  audience: string;
  svid: string;
}

export interface ValidateJwtSvidResponse {
  spiffe_id: string;
  claims: ProtoStruct;
}

/** Claims of a foreign trust domain's token that are passed back; the rest are filtered, as SPIRE does. */
const REGISTERED_CLAIMS = new Set(['aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'sub']);

/** Validates a FetchJWTSVID request; returns the audience and the requested SPIFFE ID ('' = all). */
export function checkJwtSvidRequest(req: JwtSvidRequest): { audience: string[]; spiffeId: string } {
  const audience = req.audience ?? [];
  if (audience.length === 0 || audience.some((a) => a === '')) throw invalidArgument('audience must be specified');
  const spiffeId = req.spiffe_id ?? '';
  if (spiffeId !== '') parseSpiffeId(spiffeId);
  return { audience, spiffeId };
}

/**
 * The entries to mint tokens for: the one identity asked for, or every entitled identity (the first
 * entry of each distinct SPIFFE ID), with unique hints.
 */
export function jwtSvidEntries(entries: readonly AgentEntry[], spiffeId: string): AgentEntry[] {
  if (spiffeId !== '') {
    const match = entries.find((e) => e.spiffeId === spiffeId);
    if (!match) throw permissionDenied(`no identity issued for ${spiffeId}`);
    return [match];
  }
  const seen = new Set<string>();
  const firstPerId = entries.filter((e) => {
    if (seen.has(e.spiffeId)) return false;
    seen.add(e.spiffeId);
    return true;
  });
  return withUniqueHints(firstPerId);
}

export async function fetchJwtSvids(
  source: WorkloadIdentitySource,
  entries: readonly AgentEntry[],
  audience: string[],
): Promise<JwtSvidResponse> {
  const svids = await Promise.all(
    entries.map(async (entry) => {
      const jwt = await source.fetchJwtSvid(entry.id, audience);
      return { spiffe_id: entry.spiffeId, svid: jwt.token, hint: entry.hint };
    }),
  );
  return { svids };
}

export function checkValidateRequest(req: ValidateJwtSvidRequest): { audience: string; token: string } {
  if (!req.audience) throw invalidArgument('audience must be specified');
  if (!req.svid) throw invalidArgument('svid must be specified');
  return { audience: req.audience, token: req.svid };
}

/** Validates against the own bundle and every federated bundle the agent holds. */
export async function validateJwtSvidWith(
  source: WorkloadIdentitySource,
  trustDomain: string,
  token: string,
  audience: string,
): Promise<ValidateJwtSvidResponse> {
  const keysFor = (td: string): JwtAuthority[] | undefined =>
    td === trustDomain ? source.bundle()?.jwtAuthorities : source.federatedBundles().get(td)?.jwtAuthorities;
  let result: Awaited<ReturnType<typeof validateJwtSvid>>;
  try {
    result = await validateJwtSvid(token, audience, keysFor);
  } catch (err) {
    if (isEmblemError(err)) throw err;
    throw invalidArgument(`JWT-SVID is invalid: ${errorMessage(err)}`);
  }
  const foreign = result.spiffeId.trustDomain !== trustDomain;
  const claims: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(result.claims)) {
    if (foreign && !REGISTERED_CLAIMS.has(name)) continue;
    claims[name] = value;
  }
  if (typeof claims.aud === 'string') claims.aud = [claims.aud];
  return { spiffe_id: result.spiffeId.uri, claims: toStruct(claims) };
}
