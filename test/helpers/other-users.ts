// Tests that run a child process as another user (nobody) load code from this checkout. If a
// directory on the way is closed to other users (a clone under `mktemp -d`, mode 0700), the child
// fails with a confusing MODULE_NOT_FOUND; this says what is wrong instead.
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Throws unless every directory above `path` can be traversed, and `path` read, by other users. */
export function assertReadableByOtherUsers(path: string): void {
  const target = resolve(path);
  if ((statSync(target).mode & 0o004) === 0) throw new Error(`${target} is not readable by other users; this test runs code from it as another uid`);
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(`${dir} is closed to other users (mode ${(statSync(dir).mode & 0o777).toString(8)}); this test runs code from the checkout as another uid: put the checkout where other users can reach it`);
    }
    if (dir === dirname(dir)) break;
  }
}
