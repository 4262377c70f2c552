// The wire shape of a registration entry, emblem.server.v1.Entry and emblem.server.v1.Selector
// (proto/emblem/server/v1/types.proto), as @grpc/proto-loader hands it over: field names exactly as
// in the proto (snake_case), int64 as number, defaults filled. The server's Node and Admin services
// send it and the agent receives it, so both sides use this one declaration.

/** emblem.server.v1.Selector. */
export interface SelectorProto {
  type: string;
  value: string;
}

/** emblem.server.v1.Entry. */
export interface EntryProto {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: SelectorProto[];
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  dns_names: string[];
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  hint: string;
  expires_at: number;
  created_at: number;
  revision: number;
}
