// Join tokens: random, single-use, short-lived secrets that attest an agent once (trust on first
// use). Only the SHA-256 of a token is stored; the token itself is shown once, to the operator.
import { createHash, randomBytes } from 'node:crypto';
import { invalidArgument, permissionDenied } from '../../common/errors.js';
import { agentIdPrefix } from '../../common/spiffe-id.js';
import type { Datastore } from '../datastore/types.js';

export const DEFAULT_JOIN_TOKEN_TTL = 600;
const MAX_JOIN_TOKEN_TTL = 30 * 86400;
const TOKEN_RE = /^[0-9a-f]{32}$/;

export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function joinTokenAgentId(trustDomain: string, token: string): string {
  return `${agentIdPrefix(trustDomain)}join_token/${token}`;
}

export async function generateJoinToken(
  datastore: Datastore,
  trustDomain: string,
  ttlSeconds: number,
  now = Date.now(),
): Promise<{ token: string; agentId: string; expiresAt: number }> {
  const ttl = ttlSeconds || DEFAULT_JOIN_TOKEN_TTL;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_JOIN_TOKEN_TTL) {
    throw invalidArgument(`join token TTL must be between 1 and ${MAX_JOIN_TOKEN_TTL} seconds`);
  }
  const token = randomBytes(16).toString('hex');
  const expiresAt = Math.floor(now / 1000) + ttl;
  await datastore.createJoinToken(hashJoinToken(token), expiresAt);
  return { token, agentId: joinTokenAgentId(trustDomain, token), expiresAt };
}

/**
 * Consumes a token: it is deleted whether or not it has expired, so it can never be used twice.
 * The refusal message is the same for unknown, used and malformed tokens so it does not help guessing.
 */
export async function redeemJoinToken(datastore: Datastore, trustDomain: string, token: string, now = Date.now()): Promise<string> {
  if (!TOKEN_RE.test(token)) throw permissionDenied('join token is not valid');
  const record = await datastore.consumeJoinToken(hashJoinToken(token));
  if (!record) throw permissionDenied('join token is not valid');
  if (record.expiresAt <= Math.floor(now / 1000)) throw permissionDenied('join token has expired');
  return joinTokenAgentId(trustDomain, token);
}
