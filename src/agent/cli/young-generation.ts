// The agent keeps V8's young generation at its initial size (two 1 MiB semi-spaces) unless the
// operator chose a size. By default V8 doubles the semi-spaces during allocation bursts (the first
// mint of 1,000 SVIDs, 1,000 workloads connecting) up to 16 MiB each, and an idle agent never
// shrinks them back: measured with 1,000 SVIDs, 113 MiB resident instead of 90 MiB. The agent's
// own objects are long-lived (entries, SVIDs, streams), so small semi-spaces cost it little.
//
// The semi-space maximum is fixed when V8 starts, so it cannot be changed from here; the growth
// factor is read at each growth, so a factor of 1 stops growth from now on.
import { setFlagsFromString } from 'node:v8';

const OPERATOR_FLAGS = /--(max|min)[-_]semi[-_]space[-_]size|--semi[-_]space[-_]growth[-_]factor|--max[-_]heap[-_]size/;

/** Returns false, changing nothing, when the Node flags or NODE_OPTIONS already size the young generation. */
export function keepYoungGenerationSmall(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env['NODE_OPTIONS'] ?? ''): boolean {
  if (OPERATOR_FLAGS.test(`${execArgv.join(' ')} ${nodeOptions}`)) return false;
  setFlagsFromString('--semi-space-growth-factor=1');
  return true;
}
