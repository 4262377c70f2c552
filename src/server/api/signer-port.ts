// What the agent-facing API needs from the CA (src/server/ca/svid-signer.ts implements it).
import type { KeyObject } from 'node:crypto';

export interface X509SignRequest {
  spiffeId: string;
  publicKey: KeyObject | Buffer;
  dnsNames: string[];
  /** Seconds; 0 = the server default for the kind. */
  ttlSeconds: number;
  entryId: string;
  agentId: string;
  kind: 'x509' | 'agent';
}

export interface SignedX509 {
  /** DER, leaf first, then intermediates (not the root). */
  chain: Buffer[];
  serial: string;
  notBefore: number;
  notAfter: number;
  authorityId: string;
}

export interface AgentSigner {
  signX509Batch(requests: X509SignRequest[]): Promise<SignedX509[]>;
  signJwt(request: { spiffeId: string; audience: string[]; ttlSeconds: number; entryId: string; agentId: string }): Promise<{
    token: string;
    expiresAt: number;
    authorityId: string;
  }>;
}
