import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../src/common/errors.js';
import { buildServerConfig, loadServerConfig, SERVER_CONFIG_KEYS } from '../../src/server/config.js';

const invalid = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (err: unknown) => isEmblemError(err, 'invalid_argument') && re.test((err as Error).message));

describe('server config', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'server-config-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('applies the documented defaults', () => {
    const c = buildServerConfig({ trustDomain: 'example.org' });
    assert.equal(c.bindHost, '127.0.0.1');
    assert.equal(c.bindPort, 8081);
    assert.equal(c.socket, '/tmp/emblem-server/private/api.sock');
    assert.equal(c.caTtl, 86400);
    assert.equal(c.x509SvidTtl, 3600);
    assert.equal(c.jwtSvidTtl, 300);
    assert.equal(c.agentSvidTtl, 3600);
    assert.equal(c.joinTokenTtl, 600);
    assert.equal(c.rotationInterval, 10);
    assert.equal(c.logFormat, 'json');
    assert.ok(path.isAbsolute(c.dataDir));
  });

  it('reads a YAML file and lets flags win', () => {
    const file = path.join(dir, 'server.yaml');
    fs.writeFileSync(file, 'trustDomain: example.org\nbind: 0.0.0.0:9000\ncaTtl: 2h\nx509SvidTtl: 600\n');
    const c = loadServerConfig(file, { bind: '127.0.0.1:9100', x509SvidTtl: undefined });
    assert.equal(c.bindHost, '127.0.0.1');
    assert.equal(c.bindPort, 9100);
    assert.equal(c.caTtl, 7200);
    assert.equal(c.x509SvidTtl, 600);
  });

  it('refuses unknown keys, bad values and missing required ones, naming them', () => {
    const file = path.join(dir, 'typo.yaml');
    fs.writeFileSync(file, 'trustDomain: example.org\ncaTTL: 1h\n');
    invalid(() => loadServerConfig(file, {}), /unknown key "caTTL"/);
    invalid(() => buildServerConfig({}), /trust domain is required/);
    invalid(() => buildServerConfig({ trustDomain: 'Example.org' }), /uppercase/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', bind: 'nowhere' }), /HOST:PORT/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', caTtl: '10s' }), /caTtl must be at least 60/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', x509SvidTtl: 'soon' }), /not a duration/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', logLevel: 'loud' }), /log level/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', upstreamCert: '/x.pem' }), /together/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', x509popPinned: ['abc'] }), /SHA-256/);
    invalid(() => buildServerConfig({ trustDomain: 'example.org', attestationRateLimit: 0 }), /positive integer/);
  });

  it('accepts every documented key', () => {
    const file = path.join(dir, 'all.yaml');
    fs.writeFileSync(file, SERVER_CONFIG_KEYS.filter((k) => !['upstreamCert', 'upstreamKey', 'x509popCaBundles', 'x509popPinned'].includes(k)).map((k) => `${k}: ${sample(k)}`).join('\n'));
    const c = loadServerConfig(file, {});
    assert.equal(c.metricsBind, '127.0.0.1:9090');
  });
});

function sample(key: string): string {
  const samples: Record<string, string> = {
    trustDomain: 'example.org',
    bind: '0.0.0.0:8081',
    socket: '/run/emblem/api.sock',
    dataDir: '/var/lib/emblem',
    logLevel: 'debug',
    logFormat: 'pretty',
    metricsBind: '127.0.0.1:9090',
    healthBind: '127.0.0.1:9091',
    attestationRateLimit: '30',
    csrVerifyWorkers: '2',
  };
  return samples[key] ?? '1h';
}

describe('emblem-server run flags', () => {
  it('offers a --flag for every config key', async () => {
    const { execFileSync } = await import('node:child_process');
    const help = execFileSync(process.execPath, ['--import', 'tsx', 'src/server/cli/main.ts', 'run', '--help'], { encoding: 'utf8' });
    for (const key of SERVER_CONFIG_KEYS) {
      const flag = '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
      assert.ok(help.includes(flag + ' '), `run --help lacks ${flag}`);
    }
  });
});
