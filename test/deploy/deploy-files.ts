// Readers for the files under deploy/ (systemd units, Kubernetes manifests, the Dockerfile) and for
// the CLIs' `run --help`, shared by the test/deploy tests. Deliberately small parsers: just enough
// of each format to check the deploy files against the code.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DEPLOY_DIR = join(REPO_ROOT, 'deploy');

export function readRepoFile(path: string): string {
  return readFileSync(join(REPO_ROOT, path), 'utf8');
}

/** Every file under `dir` (repo-relative paths, sorted). */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(REPO_ROOT, rel))) {
      const child = posix.join(rel, name);
      if (statSync(join(REPO_ROOT, child)).isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk(dir);
  return out.sort();
}

export interface PackageJson {
  version: string;
  bin: Record<string, string>;
}

export function packageJson(): PackageJson {
  return JSON.parse(readRepoFile('package.json')) as PackageJson;
}

// --- systemd units ---------------------------------------------------------------------------

/** section -> key -> every value in file order (systemd keys may repeat). */
export type Unit = Map<string, Map<string, string[]>>;

export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq <= 0) throw new Error(`unit line ${i + 1} is neither a section header nor KEY=VALUE: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

export function unitValues(unit: Unit, section: string, key: string): string[] {
  return unit.get(section)?.get(key) ?? [];
}

/** The effective value of a single-valued key: the last assignment wins. */
export function unitValue(unit: Unit, section: string, key: string): string | undefined {
  return unitValues(unit, section, key).at(-1);
}

// --- Kubernetes manifests --------------------------------------------------------------------

export interface K8sMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: K8sMetadata;
  [field: string]: unknown;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}

export interface Probe {
  httpGet?: { path: string; port: number | string };
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  volumeMounts?: VolumeMount[];
  securityContext?: {
    runAsUser?: number;
    runAsNonRoot?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
  };
}

export interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[]; optional?: boolean };
  hostPath?: { path: string; type?: string };
  emptyDir?: Record<string, unknown>;
  persistentVolumeClaim?: { claimName: string };
}

export interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostPID?: boolean;
  hostNetwork?: boolean;
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean; fsGroup?: number };
  containers: Container[];
  volumes?: Volume[];
}

export interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: PodSpec;
}

export interface WorkloadSpec {
  replicas?: number;
  serviceName?: string;
  selector: { matchLabels: Record<string, string> };
  template: PodTemplate;
  volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes: string[] } }[];
}

export interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  selector: Record<string, string>;
  ports: { name?: string; port: number; targetPort?: number | string }[];
}

/** Every document of a (multi-document) YAML file; a parse error or an empty document throws. */
export function readManifests(path: string): K8sObject[] {
  const docs = parseAllDocuments(readRepoFile(path));
  if (docs.length === 0) throw new Error(`${path}: empty YAML stream`);
  return docs.map((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${path} document ${i + 1}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${path} document ${i + 1} is not a mapping`);
    return value as K8sObject;
  });
}

export function findObject(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} named ${name}`);
  return found;
}

export function specOf<T>(object: K8sObject): T {
  return object['spec'] as T;
}

export function configMapData(object: K8sObject): Record<string, string> {
  return (object['data'] ?? {}) as Record<string, string>;
}

/** The deepest mount of `container` that contains `path`, and the path below it ('' for the mount point). */
export function mountOf(container: Container, path: string): { mount: VolumeMount; rest: string } | undefined {
  let best: VolumeMount | undefined;
  for (const mount of container.volumeMounts ?? []) {
    const rel = posix.relative(mount.mountPath, path);
    if (rel.startsWith('..') || posix.isAbsolute(rel)) continue;
    if (!best || mount.mountPath.length > best.mountPath.length) best = mount;
  }
  return best && { mount: best, rest: posix.relative(best.mountPath, path) };
}

export interface MountedPath {
  mount: VolumeMount;
  volume: Volume;
  rest: string;
}

/** Which pod volume holds `path` inside `container`. */
export function mountFor(pod: PodSpec, container: Container, path: string): MountedPath | undefined {
  const found = mountOf(container, path);
  if (!found) return undefined;
  const volume = (pod.volumes ?? []).find((v) => v.name === found.mount.name);
  if (!volume) throw new Error(`volumeMount ${found.mount.name} names no pod volume`);
  return { ...found, volume };
}

/** The number a named or numeric container port resolves to. */
export function resolvePort(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

// --- CLI help ----------------------------------------------------------------------------------

/** The long flags `<entry> <args...> --help` lists, running the TypeScript source through tsx. */
export function cliFlags(entry: string, args: string[]): Set<string> {
  const help = execFileSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, entry), ...args, '--help'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 15_000,
  });
  const flags = new Set<string>();
  for (const line of help.split('\n')) {
    const m = /^\s+(?:-[A-Za-z], )?(--[a-z0-9][a-z0-9-]*)/.exec(line);
    if (m) flags.add(m[1]!);
  }
  if (flags.size === 0) throw new Error(`no flags found in the help of ${entry} ${args.join(' ')}:\n${help}`);
  return flags;
}

/** `--flag value` pairs of an argument list; a flag followed by another flag (or nothing) maps to ''. */
export function flagValues(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    if (eq > 0) out.set(arg.slice(0, eq), arg.slice(eq + 1));
    else out.set(arg, args[i + 1] !== undefined && !args[i + 1]!.startsWith('--') ? args[++i]! : '');
  }
  return out;
}

// --- Dockerfile --------------------------------------------------------------------------------

export interface DockerInstruction {
  keyword: string;
  args: string;
}

export interface DockerStage {
  base: string;
  name?: string;
  instructions: DockerInstruction[];
}

/** Stages of a Dockerfile (instructions before the first FROM, i.e. global ARGs, are dropped). */
export function parseDockerfile(text: string): DockerStage[] {
  const stages: DockerStage[] = [];
  const logical = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n');
  for (const line of logical) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.replace(/\s+/g, ' ').trim();
    if (keyword === 'FROM') {
      const from = /^(?:--\S+ )*(\S+)(?: AS (\S+))?$/i.exec(args);
      if (!from) throw new Error(`bad FROM: ${args}`);
      stages.push({ base: from[1]!, ...(from[2] ? { name: from[2] } : {}), instructions: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ keyword, args });
    }
  }
  return stages;
}

export function instructions(stage: DockerStage, keyword: string): string[] {
  return stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
}

/** Whether a .dockerignore pattern list excludes `path` or one of its parent directories. */
export function dockerIgnored(patterns: string[], path: string): boolean {
  const toRegExp = (pattern: string) =>
    new RegExp(`^${pattern.replace(/^\/+|\/+$/g, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
  const parts = path.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const re = toRegExp(negated ? raw.slice(1) : raw);
    if (candidates.some((c) => re.test(c))) ignored = !negated;
  }
  return ignored;
}

export function dockerignorePatterns(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

export function repoRelative(absolute: string): string {
  return relative(REPO_ROOT, absolute).split('\\').join('/');
}

// --- the component configs deploy/ ships ------------------------------------------------------

export type Component = 'server' | 'agent';

export interface DeployConfig {
  /** Where it lives: a file, or "<manifest> ConfigMap/<name> <key>". */
  label: string;
  component: Component;
  text: string;
}

function componentOf(fileName: string, where: string): Component {
  if (fileName === 'server.yaml') return 'server';
  if (fileName === 'agent.yaml') return 'agent';
  throw new Error(`${where}: cannot tell whether ${fileName} configures the server or the agent`);
}

/** Every server or agent config under deploy/: the systemd configs and the ConfigMaps' files. */
export function deployConfigs(): DeployConfig[] {
  const configs: DeployConfig[] = listFiles('deploy/config').map((path) => ({
    label: path,
    component: componentOf(posix.basename(path), path),
    text: readRepoFile(path),
  }));
  for (const path of listFiles('deploy/kubernetes').filter((p) => p.endsWith('.yaml'))) {
    for (const object of readManifests(path).filter((o) => o.kind === 'ConfigMap')) {
      for (const [key, text] of Object.entries(configMapData(object))) {
        if (!key.endsWith('.yaml')) continue;
        const label = `${path} ConfigMap/${object.metadata.name} ${key}`;
        configs.push({ label, component: componentOf(key, label), text });
      }
    }
  }
  return configs;
}
