// TypeScript shapes of the node.proto messages as @grpc/proto-loader delivers them (snake_case,
// int64 as number, bytes as Buffer, oneof name set on the parent).
export interface AttestParamsMsg {
  attestor?: 'join_token' | 'x509pop';
  join_token?: string;
  x509pop?: { cert_chain: Buffer[] } | null;
  csr: Buffer;
}

export interface AttestAgentRequestMsg {
  step?: 'params' | 'challenge_response';
  params?: AttestParamsMsg | null;
  challenge_response?: Buffer;
}

export interface AttestAgentResponseMsg {
  challenge?: Buffer;
  result?: { agent_id: string; svid_chain: Buffer; bundle: Buffer };
}

export interface RenewAgentRequestMsg {
  csr: Buffer;
}

export interface SyncEntriesRequestMsg {
  since_revision: number;
  known_entries: { id: string; revision: number }[];
}

export interface BatchNewX509SVIDRequestMsg {
  params: { entry_id: string; csr: Buffer }[];
}

export interface X509SVIDResultMsg {
  entry_id: string;
  status: { code: number; message: string };
  svid_chain: Buffer;
  expires_at: number;
  authority_id: string;
}

export interface NewJWTSVIDRequestMsg {
  entry_id: string;
  audience: string[];
}
