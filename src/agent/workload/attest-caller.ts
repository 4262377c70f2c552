// Who is calling? Maps a Workload API call to its process, attests it, and only then checks that the
// process is still the one that connected (the PID-reuse guard), so selectors never describe a
// process that replaced the caller.
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
  const selectors = await attestUnix(peer, opts);
  assertPeerStillValid(peer);
  return { peer, selectors, selectorKeys: selectorKeys(selectors) };
}
