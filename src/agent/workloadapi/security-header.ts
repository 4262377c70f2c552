// The Workload Endpoint's mandatory SSRF guard (SPIFFE_Workload_Endpoint.md §3, §6): every request
// to SpiffeWorkloadAPI carries the metadata `workload.spiffe.io: true`, exactly once.
import type { Metadata } from '@grpc/grpc-js';
import { invalidArgument } from '../../common/errors.js';

export const SECURITY_HEADER = 'workload.spiffe.io';

/** Throws invalid_argument unless the metadata holds exactly one `workload.spiffe.io` value, `true`. */
export function checkSecurityHeader(metadata: Metadata): void {
  const values = metadata.get(SECURITY_HEADER);
  if (values.length !== 1 || values[0] !== 'true') throw invalidArgument('security header missing from request');
}
