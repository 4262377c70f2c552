// Recognising the server's "stop" answers: a banned or evicted agent must stop serving (it must not
// keep handing out cached SVIDs, SPIRE issue #3278) and exit, so its supervisor notices.
import { isEmblemError } from '../../common/errors.js';
import type { AgentStateName } from './messages.js';

export type TerminationReason = 'banned' | 'evicted';

/** The reason in a gRPC error: PERMISSION_DENIED whose message says "banned" or "evicted". */
export function terminationFromError(err: unknown): TerminationReason | undefined {
  if (!isEmblemError(err, 'permission_denied')) return undefined;
  const text = err.message.toLowerCase();
  if (text.includes('banned')) return 'banned';
  if (text.includes('evicted')) return 'evicted';
  return undefined;
}

export function terminationFromState(state: AgentStateName | undefined): TerminationReason | undefined {
  if (state === 'AGENT_STATE_BANNED') return 'banned';
  if (state === 'AGENT_STATE_EVICTED') return 'evicted';
  return undefined;
}

export function terminationMessage(reason: TerminationReason): string {
  return reason === 'banned'
    ? 'the server has banned this agent: it stops serving identities (a ban is lifted only by evicting the agent: `emblem-server agent evict`)'
    : 'the server has evicted this agent: it stops serving identities (restart it to attest again)';
}
