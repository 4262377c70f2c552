// deploy/container/Dockerfile: a build stage that installs with `npm ci`, builds and prunes dev
// dependencies, and a fresh non-root runtime stage holding exactly what the compiled code loads at
// run time (checked against the paths the code computes: the proto directory and the addon).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, posix } from 'node:path';
import { ADDON_PATH } from '../../src/agent/workload/peercred.js';
import { PROTO_DIR } from '../../src/common/grpc/proto.js';
import {
  dockerIgnored,
  dockerignorePatterns,
  flagValues,
  instructions,
  packageJson,
  parseDockerfile,
  readManifests,
  readRepoFile,
  REPO_ROOT,
  repoRelative,
  specOf,
  type DockerStage,
  type WorkloadSpec,
} from './deploy-files.js';

/** "COPY [--from=x] src... dest" -> sources, destination and the --from stage. */
function copies(stage: DockerStage): { from?: string; sources: string[]; dest: string }[] {
  return instructions(stage, 'COPY').map((args) => {
    const words = args.split(' ');
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { ...(from ? { from } : {}), sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

function absoluteIn(workdir: string, path: string): string {
  return posix.normalize(posix.isAbsolute(path) ? path : posix.join(workdir, path));
}

function workdir(stage: DockerStage): string {
  const dir = instructions(stage, 'WORKDIR').at(-1);
  assert.ok(dir, 'stage has no WORKDIR');
  return dir;
}

describe('deploy/container/Dockerfile', () => {
  const stages = parseDockerfile(readRepoFile('deploy/container/Dockerfile'));
  const build = stages.find((s) => s.name === 'build')!;
  const runtime = stages.at(-1)!;

  it('has a named build stage and a separate runtime stage', () => {
    assert.ok(stages.length >= 2, `${stages.length} stage(s)`);
    assert.ok(build, 'no stage named build');
    assert.notEqual(runtime, build);
    assert.notEqual(runtime.base, 'build', 'the runtime stage must start from a clean base image, not the build stage');
  });

  it('build stage: compilers for the addon, npm ci, build, then prune dev dependencies', () => {
    const runs = instructions(build, 'RUN').join(' && ');
    for (const tool of ['python3', 'make', 'g++']) assert.match(runs, new RegExp(`apt-get install [^&]*\\s${tool.replace('+', '\\+')}(\\s|$)`));
    const order = ['npm ci', 'npm run build', 'npm prune --omit=dev'].map((cmd) => runs.indexOf(cmd));
    assert.ok(order.every((i) => i >= 0), `missing one of npm ci / npm run build / npm prune --omit=dev in: ${runs}`);
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'npm ci, build and prune must run in that order');
    assert.doesNotMatch(runs, /npm install\b/, 'npm ci installs exactly the lockfile');
  });

  it('build stage copies only files that exist and that .dockerignore lets through', () => {
    const ignore = dockerignorePatterns(readRepoFile('.dockerignore'));
    const sources = copies(build).flatMap((c) => c.sources);
    assert.ok(sources.includes('package-lock.json'), 'npm ci needs the lockfile');
    for (const source of sources) {
      assert.ok(existsSync(join(REPO_ROOT, source)), `${source} does not exist`);
      assert.ok(!dockerIgnored(ignore, source), `${source} is excluded by .dockerignore`);
    }
  });

  it('.dockerignore keeps host build outputs and dependencies out of the context', () => {
    const ignore = dockerignorePatterns(readRepoFile('.dockerignore'));
    for (const path of ['node_modules', 'dist', 'native/peercred/build/Release/peercred.node', '.git', '.emblem/server']) {
      assert.ok(dockerIgnored(ignore, path), `${path} is not ignored`);
    }
  });

  it('runtime stage takes everything from the build stage: no sources, no compilers', () => {
    const runtimeCopies = copies(runtime);
    assert.ok(runtimeCopies.length > 0);
    for (const c of runtimeCopies) assert.equal(c.from, 'build', `COPY ${c.sources.join(' ')} does not come from the build stage`);
    assert.doesNotMatch(instructions(runtime, 'RUN').join(' '), /apt-get|npm (ci|install)/);
  });

  it('runtime stage holds what the compiled code loads, at the paths the code computes', () => {
    const buildDir = workdir(build);
    const appDir = workdir(runtime);
    const copied = new Map<string, string>();
    for (const c of copies(runtime)) {
      for (const source of c.sources) copied.set(posix.relative(appDir, absoluteIn(appDir, c.dest)), posix.relative(buildDir, absoluteIn(buildDir, source)));
    }
    // dist/ mirrors src/ (tsconfig.build.json), so the code's repo-relative paths hold in the image.
    const outDir = (JSON.parse(readRepoFile('tsconfig.build.json')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir;
    const needed = ['package.json', 'node_modules', outDir, 'bin', repoRelative(PROTO_DIR), repoRelative(ADDON_PATH)];
    for (const path of needed) assert.equal(copied.get(path), path, `${path} is not copied to ${appDir}/${path}`);
  });

  it('runtime stage runs as a non-root user', () => {
    const user = instructions(runtime, 'USER').at(-1);
    assert.ok(user, 'no USER');
    const [uid] = user.split(':');
    assert.ok(uid !== 'root' && uid !== '0', `runs as ${user}`);
    assert.match(uid!, /^\d+$/, 'a numeric uid lets Kubernetes verify runAsNonRoot');
  });

  it('links every package bin onto PATH and starts the server by default, as the StatefulSet does', () => {
    const runs = instructions(runtime, 'RUN').join(' ');
    const appDir = workdir(runtime);
    for (const [name, file] of Object.entries(packageJson().bin)) {
      assert.ok(runs.includes(`ln -s ${posix.join(appDir, file)} /usr/local/bin/${name}`), `${name} is not linked onto PATH`);
    }
    const entrypoint = JSON.parse(instructions(runtime, 'ENTRYPOINT').at(-1)!) as string[];
    const cmd = JSON.parse(instructions(runtime, 'CMD').at(-1)!) as string[];
    const [statefulSet] = readManifests('deploy/kubernetes/server.yaml').filter((o) => o.kind === 'StatefulSet');
    const container = specOf<WorkloadSpec>(statefulSet!).template.spec.containers[0]!;
    assert.deepEqual(entrypoint, container.command);
    assert.equal(flagValues(cmd).get('--config'), flagValues(container.args ?? []).get('--config'));
  });
});
