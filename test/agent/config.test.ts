import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEmblemError } from '../../src/common/errors.js';
import { AGENT_CONFIG_OPTIONS, loadAgentConfig, parseAgentConfig } from '../../src/agent/config.js';

const invalid = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (err: unknown) => isEmblemError(err, 'invalid_argument') && re.test((err as Error).message));
const base = { serverAddress: '127.0.0.1:8081', trustDomain: 'example.org' };

describe('agent config', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-config-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('applies the documented defaults', () => {
    const c = parseAgentConfig({ ...base, joinToken: 't' });
    assert.equal(c.socket, '/tmp/emblem-agent/public/api.sock');
    assert.equal(c.dataDir, './.emblem/agent');
    assert.equal(c.insecureBootstrap, false);
    assert.equal(c.discoverWorkloadPath, false);
    assert.equal(c.workloadSizeLimit, 0);
    assert.equal(c.logLevel, 'info');
  });

  it('reads YAML, lets flags (kebab-case or camelCase) win', () => {
    const file = path.join(dir, 'agent.yaml');
    fs.writeFileSync(file, 'serverAddress: emblem-server:8081\ntrustDomain: example.org\nsocket: /run/a.sock\nworkloadSizeLimit: 1024\n');
    const c = loadAgentConfig({ configFile: file, flags: { 'server-address': '10.0.0.1:8081', socket: undefined } });
    assert.equal(c.serverAddress, '10.0.0.1:8081');
    assert.equal(c.socket, '/run/a.sock');
    assert.equal(c.workloadSizeLimit, 1024);
  });

  it('refuses unknown keys, conflicts and bad values, naming them', () => {
    invalid(() => parseAgentConfig({ ...base, sockett: '/x' }), /unknown config key "sockett"/);
    invalid(() => parseAgentConfig({ trustDomain: 'example.org' }), /serverAddress/);
    invalid(() => parseAgentConfig({ serverAddress: '127.0.0.1:1' }), /trustDomain/);
    invalid(() => parseAgentConfig({ ...base, trustDomain: 'spiffe://example.org' }), /not a SPIFFE ID/);
    invalid(() => parseAgentConfig({ ...base, joinToken: 't', x509popCert: '/c', x509popKey: '/k' }), /mutually exclusive/);
    invalid(() => parseAgentConfig({ ...base, x509popCert: '/c' }), /together/);
    invalid(() => parseAgentConfig({ ...base, trustBundle: '/b', insecureBootstrap: true }), /mutually exclusive/);
    invalid(() => parseAgentConfig({ ...base, workloadSizeLimit: 'big' }), /integer/);
    invalid(() => parseAgentConfig({ ...base, metricsBind: 'nowhere' }), /HOST:PORT/);
    invalid(() => parseAgentConfig({ ...base, logFormat: 'xml' }), /json or pretty/);
  });

  it('has one flag per key, all kebab-case and unique', () => {
    const flags = AGENT_CONFIG_OPTIONS.map((o) => o.flag);
    assert.equal(new Set(flags).size, flags.length);
    for (const o of AGENT_CONFIG_OPTIONS) assert.equal(o.flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase()), o.key);
  });
});
