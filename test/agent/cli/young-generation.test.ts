// The agent keeps V8's young generation small unless the operator sized it (src/agent/cli/young-generation.ts).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../helpers/cli.js';

const MiB = 1024 * 1024;

/** Runs the setup in a fresh Node, then an allocation burst; returns what it reported and the new space size. */
function burst(env: NodeJS.ProcessEnv = {}): Promise<{ applied: boolean; newSpace: number }> {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    import { keepYoungGenerationSmall } from ${JSON.stringify(join(REPO_ROOT, 'src/agent/cli/young-generation.ts'))};
    const applied = keepYoungGenerationSmall();
    const keep = [];
    for (let i = 0; i < 300000; i++) { keep.push({ b: Buffer.alloc(64), s: 'x'.repeat(40) + i }); if (keep.length > 60000) keep.splice(0, 20000); }
    const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    console.log(JSON.stringify({ applied, newSpace }));`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, NODE_OPTIONS: '', ...env } }, (err, stdout) =>
      err ? reject(err) : resolve(JSON.parse(stdout.trim().split('\n').pop()!)),
    );
  });
}

describe('agent young generation', () => {
  it('stops the new space from growing through an allocation burst', async () => {
    const { applied, newSpace } = await burst();
    assert.equal(applied, true);
    assert.ok(newSpace <= 8 * MiB, `new space ${newSpace / MiB} MiB`);
  });

  it('leaves the sizing to the operator who set one in NODE_OPTIONS', async () => {
    const { applied, newSpace } = await burst({ NODE_OPTIONS: '--max-semi-space-size=32' });
    assert.equal(applied, false);
    assert.ok(newSpace > 8 * MiB, `the operator's 32 MiB semi-spaces grew under load: ${newSpace / MiB} MiB`);
  });
});
