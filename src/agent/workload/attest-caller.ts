// Who is calling? Maps a Workload API call to its process and attests it from what the PID-reuse
// guard read and confirmed, so selectors never describe a process that replaced the caller.
import { EmblemError } from '../../common/errors.js';
import { selectorKeys, type Selector } from '../../common/selectors.js';
import { assertPeerStillValid, type PeerProcess } from './peer-process.js';
import { attestUnix, type UnixAttestorOptions } from './unix-attestor.js';
import type { WorkloadSocket } from './uds-listener.js';

export interface AttestedCaller {
  peer: PeerProcess;
  selectors: Selector[];
  selectorKeys: Set<string>;
}

/** Throws EmblemError('permission_denied') if the caller is unknown, gone or changed. */
export async function attestCaller(
  socket: Pick<WorkloadSocket, 'peerOf'>,
  call: { getPeer(): string },
  opts: UnixAttestorOptions,
): Promise<AttestedCaller> {
  const peer = socket.peerOf(call);
  if (!peer) throw new EmblemError('permission_denied', 'caller could not be identified');
  // The guard's own status read is the one the selectors come from, so they describe the process
  // that connected. The executable is read after it, so with path discovery the guard runs again.
  const status = assertPeerStillValid(peer);
  const selectors = await attestUnix(peer, opts, status);
  if (opts.discoverWorkloadPath) assertPeerStillValid(peer);
  return { peer, selectors, selectorKeys: selectorKeys(selectors) };
}
