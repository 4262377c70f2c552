// deploy/README.md describes every file under deploy/, so a new deploy file comes with its note.
import assert from 'node:assert/strict';
import { listFiles, readRepoFile } from './deploy-files.js';

describe('deploy/README.md', () => {
  it('names every file under deploy/', () => {
    const readme = readRepoFile('deploy/README.md');
    const files = listFiles('deploy')
      .filter((p) => p !== 'deploy/README.md')
      .map((p) => p.slice('deploy/'.length));
    assert.ok(files.length >= 10, `only ${files.length} deploy files found`);
    for (const file of files) assert.ok(readme.includes(`\`${file}\``), `README does not mention ${file}`);
  });
});
