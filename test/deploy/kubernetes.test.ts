// The Kubernetes manifests in deploy/kubernetes: they parse, and the ports, socket directories,
// volumes and --config paths in the pods agree with the configs the pods load and with the code.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../src/agent/config.js';
import { parseHostPort } from '../../src/common/config-file.js';
import { parseEndpointAddress, SPIFFE_ENDPOINT_SOCKET_ENV } from '../../src/common/endpoint-address.js';
import { loadServerConfig, SERVER_DEFAULTS, type ServerConfig } from '../../src/server/config.js';
import {
  cliFlags,
  configMapData,
  findObject,
  flagValues,
  instructions,
  listFiles,
  mountFor,
  mountOf,
  packageJson,
  parseDockerfile,
  readManifests,
  readRepoFile,
  resolvePort,
  specOf,
  type Component,
  type Container,
  type K8sObject,
  type PodSpec,
  type ServiceSpec,
  type WorkloadSpec,
} from './deploy-files.js';

const NAMESPACE = 'emblem';
const MANIFESTS = listFiles('deploy/kubernetes').filter((p) => p.endsWith('.yaml'));
const CLUSTER_MANIFESTS = MANIFESTS.filter((p) => !p.startsWith('deploy/kubernetes/examples/') && !p.endsWith('kustomization.yaml'));
const RBAC_KINDS = ['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding'];

function hostPort(bind: string | undefined, what: string): { host: string; port: number } {
  assert.ok(bind, `${what} is not set`);
  return parseHostPort(bind, what);
}

function onlyContainer(pod: PodSpec): Container {
  assert.equal(pod.containers.length, 1);
  return pod.containers[0]!;
}

/** The config file a container is started with: --config must name a key of a mounted ConfigMap. */
function configFileOf(objects: K8sObject[], pod: PodSpec, container: Container, flags: Set<string>): { key: string; text: string } {
  const [program, ...args] = [...(container.command ?? []), ...(container.args ?? [])];
  assert.ok(program && program in packageJson().bin, `${container.name} runs ${program}, not a package.json bin`);
  assert.equal(args[0], 'run');
  const given = flagValues(args.slice(1));
  for (const flag of given.keys()) assert.ok(flags.has(flag), `${program} run has no ${flag}`);
  const path = given.get('--config');
  assert.ok(path, `${container.name} passes no --config`);
  const mounted = mountFor(pod, container, path);
  assert.ok(mounted?.volume.configMap, `${path} is not on a ConfigMap volume`);
  const data = configMapData(findObject(objects, 'ConfigMap', mounted.volume.configMap.name));
  const key = mounted.volume.configMap.items?.find((i) => i.path === mounted.rest)?.key ?? mounted.rest;
  assert.ok(key in data, `ConfigMap ${mounted.volume.configMap.name} has no key ${key} (keys: ${Object.keys(data).join(', ')})`);
  return { key, text: data[key]! };
}

function checkProbes(container: Container, healthBind: string | undefined, metricsBind: string | undefined): void {
  const health = hostPort(healthBind, 'healthBind');
  assert.equal(health.host, '0.0.0.0', 'the kubelet probes the pod IP, so healthBind must listen on all addresses');
  assert.equal(container.livenessProbe?.httpGet?.path, '/live');
  assert.equal(container.readinessProbe?.httpGet?.path, '/ready');
  assert.equal(resolvePort(container, container.livenessProbe?.httpGet?.port), health.port);
  assert.equal(resolvePort(container, container.readinessProbe?.httpGet?.port), health.port);
  assert.equal(resolvePort(container, 'metrics'), hostPort(metricsBind, 'metricsBind').port);
}

/** A file path the component reads must come from a read-only volume of the given kind. */
function assertReadOnlyFrom(pod: PodSpec, container: Container, path: string | undefined, kind: 'configMap' | 'hostPath'): void {
  assert.ok(path, 'path not set');
  const mounted = mountFor(pod, container, path);
  assert.ok(mounted, `${path} is on no volume`);
  assert.ok(mounted.volume[kind], `${path} is on volume ${mounted.volume.name}, not a ${kind}`);
  assert.equal(mounted.mount.readOnly, true, `${mounted.mount.mountPath} should be read-only`);
  if (kind === 'configMap' && mounted.volume.configMap?.items) {
    assert.ok(mounted.volume.configMap.items.some((i) => i.path === mounted.rest), `ConfigMap items do not provide ${mounted.rest}`);
  }
}

describe('Kubernetes manifests', () => {
  let tmp: string;
  let objects: K8sObject[];
  const flags = {} as Record<Component, Set<string>>;

  function load<T>(component: Component, text: string): T {
    const path = join(tmp, `${component}.yaml`);
    writeFileSync(path, text);
    return (component === 'server' ? loadServerConfig(path, {}) : loadAgentConfig({ configFile: path })) as T;
  }

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'emblem-deploy-k8s-'));
    objects = CLUSTER_MANIFESTS.flatMap(readManifests);
    flags.server = cliFlags('src/server/cli/main.ts', ['run']);
    flags.agent = cliFlags('src/agent/cli/main.ts', ['run']);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('every manifest parses, and every document is a named Kubernetes object', () => {
    assert.ok(MANIFESTS.length >= 4, `only ${MANIFESTS.length} manifests`);
    for (const path of MANIFESTS) {
      for (const object of readManifests(path)) {
        assert.ok(typeof object.apiVersion === 'string' && typeof object.kind === 'string', `${path}: document without apiVersion/kind`);
        if (object.kind !== 'Kustomization') assert.ok(object.metadata?.name, `${path}: ${object.kind} without a name`);
      }
    }
  });

  it('the kustomization lists every cluster manifest and sets the namespace', () => {
    const [kustomization] = readManifests('deploy/kubernetes/kustomization.yaml');
    assert.equal(kustomization!['namespace'], NAMESPACE);
    const resources = (kustomization!['resources'] as string[]).map((r) => `deploy/kubernetes/${r}`).sort();
    assert.deepEqual(resources, [...CLUSTER_MANIFESTS].sort());
  });

  it('every namespaced object is in the emblem namespace, which exists', () => {
    findObject(objects, 'Namespace', NAMESPACE);
    for (const object of objects.filter((o) => o.kind !== 'Namespace')) {
      assert.equal(object.metadata.namespace, NAMESPACE, `${object.kind}/${object.metadata.name}`);
    }
  });

  it('needs no RBAC: service accounts carry no API token and nothing grants permissions', () => {
    assert.deepEqual(objects.filter((o) => RBAC_KINDS.includes(o.kind)).map((o) => o.kind), []);
    for (const sa of objects.filter((o) => o.kind === 'ServiceAccount')) assert.equal(sa['automountServiceAccountToken'], false);
    for (const [kind, name] of [['StatefulSet', 'emblem-server'], ['DaemonSet', 'emblem-agent']] as const) {
      const pod = specOf<WorkloadSpec>(findObject(objects, kind, name)).template.spec;
      assert.equal(pod.automountServiceAccountToken, false);
      findObject(objects, 'ServiceAccount', pod.serviceAccountName!);
    }
  });

  it('the ConfigMaps pods use but the manifests do not define are the ones deploy/README.md has the operator create', () => {
    const defined = new Set(objects.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name));
    const external = new Set<string>();
    for (const object of objects.filter((o) => o.kind === 'StatefulSet' || o.kind === 'DaemonSet')) {
      for (const volume of specOf<WorkloadSpec>(object).template.spec.volumes ?? []) {
        if (volume.configMap && !defined.has(volume.configMap.name)) external.add(volume.configMap.name);
      }
    }
    assert.deepEqual([...external].sort(), ['emblem-trust-bundle', 'emblem-x509pop-ca']);
    const readme = readRepoFile('deploy/README.md');
    for (const name of external) assert.match(readme, new RegExp(`create configmap ${name} `), `README does not say how to create ${name}`);
  });

  it('every container runs the image built from this package version', () => {
    for (const kind of ['StatefulSet', 'DaemonSet']) {
      for (const object of objects.filter((o) => o.kind === kind)) {
        for (const c of specOf<WorkloadSpec>(object).template.spec.containers) assert.equal(c.image, `emblem:${packageJson().version}`);
      }
    }
  });

  describe('server', () => {
    let set: WorkloadSpec;
    let pod: PodSpec;
    let container: Container;
    let config: ServerConfig;

    before(() => {
      set = specOf<WorkloadSpec>(findObject(objects, 'StatefulSet', 'emblem-server'));
      pod = set.template.spec;
      container = onlyContainer(pod);
      const file = configFileOf(objects, pod, container, flags.server);
      assert.equal(file.key, 'server.yaml');
      config = load<ServerConfig>('server', file.text);
    });

    it('is a single replica selected by its own labels, governed by a headless Service', () => {
      assert.equal(set.replicas, 1, 'the level datastore allows one server process');
      for (const [k, v] of Object.entries(set.selector.matchLabels)) assert.equal(set.template.metadata.labels[k], v);
      const governing = specOf<ServiceSpec>(findObject(objects, 'Service', set.serviceName!));
      assert.equal(governing.clusterIP, 'None');
    });

    it('keeps dataDir on the persistent volume claim template', () => {
      const mounted = mountOf(container, config.dataDir);
      assert.equal(mounted?.rest, '');
      assert.ok(set.volumeClaimTemplates?.some((t) => t.metadata.name === mounted.mount.name), `${config.dataDir} is not on a claim template`);
      assert.ok(!pod.volumes?.some((v) => v.name === mounted.mount.name), 'the data volume must come from volumeClaimTemplates');
    });

    it('the emblem-server Service exposes the config bind port, which the container declares', () => {
      const bind = hostPort(`${config.bindHost}:${config.bindPort}`, 'bind');
      assert.equal(bind.host, '0.0.0.0');
      const service = specOf<ServiceSpec>(findObject(objects, 'Service', 'emblem-server'));
      for (const [k, v] of Object.entries(service.selector)) assert.equal(set.template.metadata.labels[k], v);
      const port = service.ports.find((p) => p.name === 'grpc');
      assert.equal(port?.port, bind.port);
      assert.equal(resolvePort(container, port.targetPort ?? port.port), bind.port);
    });

    it('probes /live and /ready on healthBind and names the metricsBind port', () => {
      checkProbes(container, config.healthBind, config.metricsBind);
    });

    it('keeps the admin socket at the default path, on a writable emptyDir', () => {
      assert.equal(config.socket, SERVER_DEFAULTS.socket, 'kubectl exec ... emblem-server <admin command> relies on the default --socket');
      const mounted = mountFor(pod, container, posix.dirname(config.socket));
      assert.ok(mounted?.volume.emptyDir, `${config.socket} is not on an emptyDir`);
      assert.notEqual(mounted.mount.readOnly, true);
    });

    it('reads the x509pop CA bundles from a read-only ConfigMap', () => {
      assert.ok(config.x509popCaBundles.length > 0);
      for (const path of config.x509popCaBundles) assertReadOnlyFrom(pod, container, path, 'configMap');
    });

    it('runs non-root, read-only, without privileges', () => {
      assert.equal(pod.securityContext?.runAsNonRoot, true);
      const dockerUser = instructions(parseDockerfile(readRepoFile('deploy/container/Dockerfile')).at(-1)!, 'USER').at(-1)!;
      assert.equal(String(pod.securityContext?.runAsUser), dockerUser.split(':')[0]);
      assert.equal(pod.securityContext?.fsGroup, pod.securityContext?.runAsUser, 'fsGroup lets the server write its volume');
      assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
      assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
      assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
      assert.equal(container.securityContext?.capabilities?.add, undefined);
    });
  });

  describe('agent', () => {
    let pod: PodSpec;
    let container: Container;
    let config: AgentConfig;
    let server: ServerConfig;

    before(() => {
      pod = specOf<WorkloadSpec>(findObject(objects, 'DaemonSet', 'emblem-agent')).template.spec;
      container = onlyContainer(pod);
      const file = configFileOf(objects, pod, container, flags.agent);
      assert.equal(file.key, 'agent.yaml');
      config = load<AgentConfig>('agent', file.text);
      server = load<ServerConfig>('server', configMapData(findObject(objects, 'ConfigMap', 'emblem-server-config'))['server.yaml']!);
    });

    it('dials the emblem-server Service by its cluster DNS name and port, in the same trust domain', () => {
      const service = findObject(objects, 'Service', 'emblem-server');
      const port = specOf<ServiceSpec>(service).ports.find((p) => p.name === 'grpc')!.port;
      assert.equal(config.serverAddress, `${service.metadata.name}.${service.metadata.namespace}.svc:${port}`);
      assert.equal(config.trustDomain, server.trustDomain);
    });

    it('shares its socket directory with the host through a hostPath at the same path', () => {
      const socketDir = posix.dirname(config.socket);
      const mounted = mountFor(pod, container, config.socket);
      assert.ok(mounted?.volume.hostPath, `${config.socket} is not on a hostPath volume`);
      assert.equal(mounted.mount.mountPath, socketDir, 'mount exactly the socket directory, nothing above it');
      assert.equal(mounted.volume.hostPath.path, socketDir);
      assert.notEqual(mounted.mount.readOnly, true);
    });

    it('keeps dataDir on the host, so its SVID survives pod restarts', () => {
      const mounted = mountFor(pod, container, config.dataDir);
      assert.ok(mounted?.volume.hostPath, `${config.dataDir} is not on a hostPath volume`);
      assert.equal(mounted.rest, '');
      assert.notEqual(mounted.mount.readOnly, true);
    });

    it('reads the trust bundle from a ConfigMap and its x509pop credentials from the host, read-only', () => {
      assertReadOnlyFrom(pod, container, config.trustBundle, 'configMap');
      assertReadOnlyFrom(pod, container, config.x509popCert, 'hostPath');
      assertReadOnlyFrom(pod, container, config.x509popKey, 'hostPath');
    });

    it('sees host processes (hostPID) but keeps the pod network', () => {
      assert.equal(pod.hostPID, true, 'SO_PEERCRED pids must be visible in /proc');
      assert.notEqual(pod.hostNetwork, true);
    });

    it('probes /live and /ready on healthBind and names the metricsBind port', () => {
      checkProbes(container, config.healthBind, config.metricsBind);
    });

    it('drops every capability but SYS_PTRACE, which it holds exactly when discovering workload paths', () => {
      const sc = container.securityContext;
      assert.deepEqual(sc?.capabilities?.drop, ['ALL']);
      assert.deepEqual(sc?.capabilities?.add ?? [], config.discoverWorkloadPath ? ['SYS_PTRACE'] : []);
      assert.equal(sc?.allowPrivilegeEscalation, false);
      assert.equal(sc?.readOnlyRootFilesystem, true);
    });

    it('the example workload mounts the same host directory and finds the socket through SPIFFE_ENDPOINT_SOCKET', () => {
      const [example] = readManifests('deploy/kubernetes/examples/workload.yaml');
      const workloadPod = specOf<WorkloadSpec>(example!).template.spec;
      const workload = onlyContainer(workloadPod);
      const endpoint = workload.env?.find((e) => e.name === SPIFFE_ENDPOINT_SOCKET_ENV)?.value;
      assert.ok(endpoint, `the example sets no ${SPIFFE_ENDPOINT_SOCKET_ENV}`);
      const address = parseEndpointAddress(endpoint);
      assert.equal(address.kind, 'unix');
      const agentSocketDir = mountFor(pod, container, config.socket)?.volume.hostPath?.path;
      assert.ok(agentSocketDir, 'the agent socket is not on a hostPath');
      const mounted = mountFor(workloadPod, workload, address.path);
      assert.equal(mounted?.volume.hostPath?.path, agentSocketDir);
      assert.equal(mounted.rest, posix.basename(config.socket));
    });
  });
});
