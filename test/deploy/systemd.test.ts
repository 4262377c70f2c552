// The systemd units in deploy/systemd: hardened, run as their own users, and in step with the
// configs they load (socket and data paths inside the directories systemd creates) and with the
// CLI (every ExecStart flag exists in `run --help`).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../src/agent/config.js';
import { loadServerConfig, type ServerConfig } from '../../src/server/config.js';
import { cliFlags, flagValues, packageJson, parseUnit, readRepoFile, unitValue, unitValues, type Component, type Unit } from './deploy-files.js';

const CLI_ENTRY: Record<Component, string> = { server: 'src/server/cli/main.ts', agent: 'src/agent/cli/main.ts' };
const CONFIG_FILE: Record<Component, string> = { server: 'deploy/config/server.yaml', agent: 'deploy/config/agent.yaml' };
const UNIT_FILE: Record<Component, string> = { server: 'deploy/systemd/emblem-server.service', agent: 'deploy/systemd/emblem-agent.service' };

const HARDENING: Record<string, string> = {
  NoNewPrivileges: 'yes',
  ProtectSystem: 'strict',
  ProtectHome: 'yes',
  PrivateTmp: 'yes',
  PrivateDevices: 'yes',
  ProtectKernelTunables: 'yes',
  ProtectKernelModules: 'yes',
  ProtectKernelLogs: 'yes',
  ProtectControlGroups: 'yes',
  RestrictNamespaces: 'yes',
  RestrictSUIDSGID: 'yes',
  LockPersonality: 'yes',
  SystemCallArchitectures: 'native',
  UMask: '0077',
};

/** sysusers.d lines "u NAME ..." -> names. */
function sysusers(): string[] {
  return readRepoFile('deploy/systemd/emblem.sysusers.conf')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === 'u')
    .map((f) => f[1]!);
}

function isWithin(dir: string, path: string): boolean {
  const rel = posix.relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !posix.isAbsolute(rel);
}

describe('systemd units', () => {
  let tmp: string;
  const units = {} as Record<Component, Unit>;
  const flags = {} as Record<Component, Set<string>>;
  let server: ServerConfig;
  let agent: AgentConfig;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'emblem-deploy-systemd-'));
    for (const component of ['server', 'agent'] as const) {
      units[component] = parseUnit(readRepoFile(UNIT_FILE[component]));
      flags[component] = cliFlags(CLI_ENTRY[component], ['run']);
    }
    // Load the configs as the units do: from their install path's file name, through the loaders.
    const serverPath = join(tmp, 'server.yaml');
    writeFileSync(serverPath, readRepoFile(CONFIG_FILE.server));
    server = loadServerConfig(serverPath, {});
    const agentPath = join(tmp, 'agent.yaml');
    writeFileSync(agentPath, readRepoFile(CONFIG_FILE.agent));
    agent = loadAgentConfig({ configFile: agentPath });
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const component of ['server', 'agent'] as const) {
    describe(UNIT_FILE[component], () => {
      const service = (key: string) => unitValue(units[component], 'Service', key);

      it('has the three sections and is wanted by multi-user.target', () => {
        assert.deepEqual([...units[component].keys()], ['Unit', 'Service', 'Install']);
        assert.equal(unitValue(units[component], 'Install', 'WantedBy'), 'multi-user.target');
      });

      it('runs as a dedicated user that emblem.sysusers.conf creates', () => {
        assert.equal(service('User'), `emblem-${component}`);
        assert.equal(service('Group'), `emblem-${component}`);
        assert.ok(sysusers().includes(`emblem-${component}`), `sysusers has no emblem-${component}`);
      });

      it('sets the hardening directives', () => {
        for (const [key, value] of Object.entries(HARDENING)) assert.equal(service(key), value, `${key}=`);
        assert.equal(service('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6');
        assert.deepEqual(unitValues(units[component], 'Service', 'SystemCallFilter'), ['@system-service', '~@privileged']);
        // A denied system call fails with EPERM instead of killing Node (libuv probes some calls).
        assert.equal(service('SystemCallErrorNumber'), 'EPERM');
      });

      it('leaves MemoryDenyWriteExecute off: V8 compiles to executable memory', () => {
        assert.notEqual(service('MemoryDenyWriteExecute'), 'yes');
      });

      it('starts the package bin with `run --config` and only flags the CLI knows', () => {
        const argv = service('ExecStart')!.split(/\s+/);
        const program = argv[0]!;
        const bin = packageJson().bin[`emblem-${component}`];
        assert.ok(bin, `package.json has no bin emblem-${component}`);
        assert.ok(posix.isAbsolute(program) && program.endsWith(`/${bin}`), `${program} is not the installed ${bin}`);
        assert.equal(argv[1], 'run');
        const given = flagValues(argv.slice(2));
        for (const flag of given.keys()) assert.ok(flags[component].has(flag), `emblem-${component} run has no ${flag}`);
        const configPath = given.get('--config');
        assert.ok(configPath, 'ExecStart passes no --config');
        assert.equal(basename(configPath), basename(CONFIG_FILE[component]));
        assert.equal(dirname(configPath), `/etc/${service('ConfigurationDirectory')}`);
      });

      it('keeps the data directory in its StateDirectory, mode 0700', () => {
        const dataDir = component === 'server' ? server.dataDir : agent.dataDir;
        assert.equal(dataDir, `/var/lib/${service('StateDirectory')}`);
        assert.equal(service('StateDirectoryMode'), '0700');
      });

      it('puts its socket inside its RuntimeDirectory', () => {
        const socket = component === 'server' ? server.socket : agent.socket;
        const runtime = `/run/${service('RuntimeDirectory')}`;
        assert.equal(service('RuntimeDirectory'), `emblem-${component}`);
        assert.ok(isWithin(runtime, socket), `${socket} is not inside ${runtime}`);
      });
    });
  }

  it('server: no capabilities, admin runtime directory 0700, other processes and users hidden', () => {
    const unit = units.server;
    assert.equal(unitValue(unit, 'Service', 'CapabilityBoundingSet'), '');
    assert.equal(unitValue(unit, 'Service', 'AmbientCapabilities'), '');
    assert.equal(unitValue(unit, 'Service', 'RuntimeDirectoryMode'), '0700');
    assert.equal(unitValue(unit, 'Service', 'ProtectProc'), 'invisible');
    assert.equal(unitValue(unit, 'Service', 'PrivateUsers'), 'yes');
  });

  it('agent: the runtime directory is world-traversable so workloads reach the socket', () => {
    assert.equal(unitValue(units.agent, 'Service', 'RuntimeDirectoryMode'), '0755');
  });

  it('agent: holds CAP_SYS_PTRACE exactly when the config discovers workload paths', () => {
    const caps = (key: string) => (unitValue(units.agent, 'Service', key) ?? '').split(/\s+/).filter(Boolean);
    const expected = agent.discoverWorkloadPath ? ['CAP_SYS_PTRACE'] : [];
    assert.deepEqual(caps('AmbientCapabilities'), expected);
    assert.deepEqual(caps('CapabilityBoundingSet'), expected);
  });

  it('agent: sees other users in /proc (no ProtectProc=invisible, no private user namespace)', () => {
    assert.ok(!['invisible', 'noaccess', 'ptraceable'].includes(unitValue(units.agent, 'Service', 'ProtectProc') ?? 'default'));
    assert.notEqual(unitValue(units.agent, 'Service', 'ProcSubset'), 'pid');
    assert.notEqual(unitValue(units.agent, 'Service', 'PrivateUsers'), 'yes');
  });

  it('agent and server configs can share a host: same trust domain, distinct listener ports', () => {
    assert.equal(agent.trustDomain, server.trustDomain);
    const ports = [server.bindPort, server.healthBind, server.metricsBind, agent.healthBind, agent.metricsBind].map((p) =>
      typeof p === 'number' ? p : Number(p!.split(':').at(-1)),
    );
    assert.equal(new Set(ports).size, ports.length, `ports collide: ${ports.join(', ')}`);
    assert.equal(Number(agent.serverAddress.split(':').at(-1)), server.bindPort);
  });

  it('every file a config names lies in the ConfigurationDirectory (readable under ProtectHome/PrivateTmp)', () => {
    const files: Record<Component, (string | undefined)[]> = {
      server: [...server.x509popCaBundles, server.upstreamCert, server.upstreamKey],
      agent: [agent.trustBundle, agent.x509popCert, agent.x509popKey],
    };
    for (const component of ['server', 'agent'] as const) {
      const configDir = `/etc/${unitValue(units[component], 'Service', 'ConfigurationDirectory')}`;
      for (const file of files[component].filter((f) => f !== undefined)) {
        assert.ok(isWithin(configDir, file), `${component}: ${file} is outside ${configDir}`);
      }
    }
    assert.ok(agent.trustBundle, 'the agent config names no trust bundle');
  });
});
