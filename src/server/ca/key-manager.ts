// Where the server keeps its CA and JWT signing keys. The disk form is one unencrypted PKCS#8 PEM
// file per key in a 0700 directory, each file 0600 and written atomically (temp file, fsync, rename,
// fsync of the directory), so a kill -9 leaves either no file or the whole key, never half of one.
import { randomBytes, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EmblemError, alreadyExists, invalidArgument } from '../../common/errors.js';
import { generateKeyPair, privateKeyToPem, type KeyPair } from '../../common/x509/keys.js';

export type { KeyPair };

export interface KeyManager {
  /** Creates and stores a new P-256 key; already_exists if keyId is taken. */
  generate(keyId: string): Promise<KeyPair>;
  get(keyId: string): Promise<KeyPair | undefined>;
  /** Deleting a missing key is not an error. */
  delete(keyId: string): Promise<void>;
  /** IDs of every stored key (used to remove keys no journal row refers to). */
  list(): Promise<string[]>;
}

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const KEY_SUFFIX = '.pem';
const TEMP_SUFFIX = '.tmp';

/** A key ID becomes a file name: letters, digits, '-' and '_' only, so no path tricks are possible. */
export function checkKeyId(keyId: string): string {
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) {
    throw invalidArgument(`invalid key ID ${JSON.stringify(String(keyId).slice(0, 80))}: use 1-128 of [A-Za-z0-9_-]`);
  }
  return keyId;
}

function pairOf(privateKey: KeyObject): KeyPair {
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

export function diskKeyManager(dir: string): KeyManager {
  let ready: Promise<void> | undefined;

  // Creates the directory (0700, also tightened if it existed) and removes temp files a crash left.
  const ensureDir = (): Promise<void> => {
    ready ??= (async () => {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.chmod(dir, 0o700);
      for (const name of await fs.readdir(dir)) {
        if (name.startsWith('.') && name.endsWith(TEMP_SUFFIX)) await fs.rm(path.join(dir, name), { force: true });
      }
    })().catch((err: unknown) => {
      ready = undefined;
      throw new EmblemError('internal', `cannot prepare key directory ${dir}`, { cause: err });
    });
    return ready;
  };

  const fileOf = (keyId: string): string => path.join(dir, checkKeyId(keyId) + KEY_SUFFIX);

  async function writeAtomically(file: string, contents: string): Promise<void> {
    const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
    const handle = await fs.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.rename(temp, file);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    await fsyncDir(dir);
  }

  return {
    async generate(keyId) {
      const file = fileOf(keyId);
      await ensureDir();
      try {
        await fs.access(file);
        throw alreadyExists(`key ${keyId} already exists`);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      const pair = generateKeyPair();
      await writeAtomically(file, privateKeyToPem(pair.privateKey));
      return pair;
    },

    async get(keyId) {
      const file = fileOf(keyId);
      await ensureDir();
      let pem: string;
      try {
        pem = await fs.readFile(file, 'utf8');
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return undefined;
        throw err;
      }
      try {
        return pairOf(createPrivateKey({ key: pem, format: 'pem' }));
      } catch (err) {
        throw new EmblemError('internal', `key file ${file} is not a valid PEM private key`, { cause: err });
      }
    },

    async delete(keyId) {
      const file = fileOf(keyId);
      await ensureDir();
      await fs.rm(file, { force: true });
      await fsyncDir(dir);
    },

    async list() {
      await ensureDir();
      const names = await fs.readdir(dir);
      return names
        .filter((n) => n.endsWith(KEY_SUFFIX))
        .map((n) => n.slice(0, -KEY_SUFFIX.length))
        .filter((id) => KEY_ID.test(id))
        .sort();
    },
  };
}

/** Keys held in memory only (tests, and servers that accept losing their CA on restart). */
export function memoryKeyManager(): KeyManager {
  const keys = new Map<string, KeyPair>();
  return {
    async generate(keyId) {
      checkKeyId(keyId);
      if (keys.has(keyId)) throw alreadyExists(`key ${keyId} already exists`);
      const pair = generateKeyPair();
      keys.set(keyId, pair);
      return pair;
    },
    async get(keyId) {
      return keys.get(checkKeyId(keyId));
    },
    async delete(keyId) {
      keys.delete(checkKeyId(keyId));
    },
    async list() {
      return [...keys.keys()].sort();
    },
  };
}
