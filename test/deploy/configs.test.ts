// Every server and agent config that deploy/ ships (the systemd configs and the Kubernetes
// ConfigMaps) must load through the real config loaders, and a key the loaders do not know must
// stop them, so a deploy file can never carry a setting the code silently ignores.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { AGENT_CONFIG_OPTIONS, loadAgentConfig } from '../../src/agent/config.js';
import { EmblemError } from '../../src/common/errors.js';
import { SERVER_CONFIG_KEYS, loadServerConfig } from '../../src/server/config.js';
import { deployConfigs, type Component, type DeployConfig } from './deploy-files.js';

const KNOWN_KEYS: Record<Component, readonly string[]> = {
  server: SERVER_CONFIG_KEYS,
  agent: AGENT_CONFIG_OPTIONS.map((o) => o.key),
};

describe('deploy configs', () => {
  let dir: string;
  let counter = 0;
  const configs = deployConfigs();

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'emblem-deploy-configs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function load(component: Component, text: string): unknown {
    const path = join(dir, `${component}-${counter++}.yaml`);
    writeFileSync(path, text);
    return component === 'server' ? loadServerConfig(path, {}) : loadAgentConfig({ configFile: path });
  }

  function mapping(config: DeployConfig): Record<string, unknown> {
    const doc = parse(config.text) as unknown;
    assert.ok(doc !== null && typeof doc === 'object' && !Array.isArray(doc), `${config.label} is not a YAML mapping`);
    return doc as Record<string, unknown>;
  }

  it('finds the systemd configs and the ConfigMap configs of both components', () => {
    const labels = configs.map((c) => `${c.component}: ${c.label}`);
    for (const expected of [
      'server: deploy/config/server.yaml',
      'agent: deploy/config/agent.yaml',
      'server: deploy/kubernetes/server.yaml ConfigMap/emblem-server-config server.yaml',
      'agent: deploy/kubernetes/agent.yaml ConfigMap/emblem-agent-config agent.yaml',
    ]) {
      assert.ok(labels.includes(expected), `missing ${expected}; found ${labels.join(', ')}`);
    }
  });

  for (const config of configs) {
    describe(config.label, () => {
      it('loads through the real config loader', () => {
        assert.doesNotThrow(() => load(config.component, config.text));
      });

      it(`uses only keys the ${config.component} knows`, () => {
        const unknown = Object.keys(mapping(config)).filter((k) => !KNOWN_KEYS[config.component].includes(k));
        assert.deepEqual(unknown, []);
      });

      it('makes the loader reject the copy when any one key is misspelt', () => {
        const original = mapping(config);
        for (const key of Object.keys(original)) {
          const mutated: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(original)) mutated[k === key ? `${k}s` : k] = v;
          assert.throws(
            () => load(config.component, stringify(mutated)),
            (err: unknown) => err instanceof EmblemError && err.message.includes(`"${key}s"`),
            `renaming ${key} to ${key}s was not rejected`,
          );
        }
      });

      it('makes the loader reject the copy with a snake_case key added', () => {
        const mutated = { ...mapping(config), trust_domain: 'example.org' };
        assert.throws(
          () => load(config.component, stringify(mutated)),
          (err: unknown) => err instanceof EmblemError && err.message.includes('"trust_domain"'),
        );
      });

      it('carries no secret (a join token belongs on the command line or in a protected file)', () => {
        assert.equal(mapping(config)['joinToken'], undefined);
      });
    });
  }
});
