import assert from 'node:assert/strict';
import { sign, verify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../../src/common/errors.js';
import { diskKeyManager, memoryKeyManager } from '../../../src/server/ca/key-manager.js';

const mode = (p: string): number => fs.statSync(p).mode & 0o777;

function roundTrips(pair: { privateKey: import('node:crypto').KeyObject; publicKey: import('node:crypto').KeyObject }, other: typeof pair): void {
  const data = Buffer.from('key manager round trip');
  assert.ok(verify('sha256', data, other.publicKey, sign('sha256', data, pair.privateKey)));
}

describe('server/ca key managers', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emblem-keys-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('disk: stores PKCS#8 PEM files 0600 in a 0700 directory and reads them back', async () => {
    const dir = path.join(tmp, 'keys');
    const km = diskKeyManager(dir);
    const pair = await km.generate('x509-abc');
    assert.equal(mode(dir), 0o700);
    const file = path.join(dir, 'x509-abc.pem');
    assert.equal(mode(file), 0o600);
    assert.match(fs.readFileSync(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(pair.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

    // A second manager on the same directory (a restart) sees the same key.
    const again = await diskKeyManager(dir).get('x509-abc');
    assert.ok(again);
    roundTrips(pair, again);
    roundTrips(again, pair);
    assert.deepEqual(await km.list(), ['x509-abc']);
    assert.equal(fs.readdirSync(dir).length, 1, 'no temp files left behind');
  });

  it('disk: tightens an existing directory to 0700 and removes temp files a crash left', async () => {
    const dir = path.join(tmp, 'loose');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, '.jwt-1.pem.0011aabb.tmp'), 'half a key');
    const km = diskKeyManager(dir);
    assert.deepEqual(await km.list(), []);
    assert.equal(mode(dir), 0o700);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('disk: refuses to overwrite a key, and deletes idempotently', async () => {
    const km = diskKeyManager(path.join(tmp, 'k'));
    const first = await km.generate('jwt-1');
    await assert.rejects(km.generate('jwt-1'), (err) => isEmblemError(err, 'already_exists'));
    const kept = await km.get('jwt-1');
    assert.ok(kept);
    roundTrips(first, kept);
    await km.delete('jwt-1');
    assert.equal(await km.get('jwt-1'), undefined);
    await km.delete('jwt-1');
    assert.deepEqual(await km.list(), []);
  });

  it('disk: rejects key IDs that are not plain file names and touches nothing', async () => {
    const dir = path.join(tmp, 'k');
    const km = diskKeyManager(dir);
    for (const bad of ['', '../escape', 'a/b', '.hidden', 'x'.repeat(129), 'a.pem', 'white space']) {
      await assert.rejects(km.generate(bad), (err) => isEmblemError(err, 'invalid_argument'), bad);
      await assert.rejects(km.get(bad), (err) => isEmblemError(err, 'invalid_argument'), bad);
      await assert.rejects(km.delete(bad), (err) => isEmblemError(err, 'invalid_argument'), bad);
    }
    assert.equal(fs.existsSync(path.join(tmp, 'escape.pem')), false);
    assert.equal(fs.existsSync(dir), false);
  });

  it('disk: a corrupt key file is an internal error, not a missing key', async () => {
    const dir = path.join(tmp, 'k');
    const km = diskKeyManager(dir);
    await km.generate('x509-1');
    fs.writeFileSync(path.join(dir, 'x509-1.pem'), 'garbage');
    await assert.rejects(km.get('x509-1'), (err) => isEmblemError(err, 'internal'));
  });

  it('memory: generate, get, list, delete', async () => {
    const km = memoryKeyManager();
    const pair = await km.generate('a');
    await assert.rejects(km.generate('a'), (err) => isEmblemError(err, 'already_exists'));
    await assert.rejects(km.generate('../a'), (err) => isEmblemError(err, 'invalid_argument'));
    assert.equal(await km.get('a'), pair);
    assert.deepEqual(await km.list(), ['a']);
    await km.delete('a');
    assert.equal(await km.get('a'), undefined);
  });
});
