// Loads the peer-credential addon (native/peercred). It is built by `npm run build:native`.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface PeerCredAddon {
  /** getsockopt(SO_PEERCRED) on a connected Unix socket: the process that called connect(). */
  getPeerCred(fd: number): PeerCred;
  /** getsockopt(SO_PEERPIDFD): a pidfd pinned to the connecting process, or -1 if the kernel lacks it (< 6.5). */
  getPeerPidfd(fd: number): number;
  /** False once the pidfd's process has exited (the pidfd turned readable). */
  pidfdIsAlive(pidfd: number): boolean;
  closeFd(fd: number): void;
}

/** The addon's errors carry the errno, e.g. `{ errno: 9, code: 'EBADF', syscall: 'poll' }`. */
export interface NativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

export const ADDON_PATH = fileURLToPath(new URL('../../../native/peercred/build/Release/peercred.node', import.meta.url));

let addon: PeerCredAddon | undefined;

/** The addon, loaded on first use. Throws a clear error if it was not built. */
export function peerCredAddon(): PeerCredAddon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as PeerCredAddon;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'MODULE_NOT_FOUND' ? 'it has not been built' : 'it failed to load';
    throw new Error(`peer-credential addon ${ADDON_PATH}: ${hint}; run npm run build:native`, { cause: err });
  }
  return addon;
}
