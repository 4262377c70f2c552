// Which TLS connections belong to which agent, so that banning or evicting an agent can cut its
// open connections and streams at once.
import type { ServerTransport } from '../transport/tls-listener.js';

export interface AgentConnections {
  add(agentId: string, peerToken: string): void;
  /** Destroys every connection the agent has made; returns how many. */
  cut(agentId: string): number;
}

export function createAgentConnections(transport: () => ServerTransport | undefined): AgentConnections {
  const tokensByAgent = new Map<string, Set<string>>();
  return {
    add(agentId, token) {
      let set = tokensByAgent.get(agentId);
      if (!set) tokensByAgent.set(agentId, (set = new Set()));
      // Forget connections that have closed, so an agent that reconnects for months does not
      // grow its set without bound.
      const live = transport();
      if (live) for (const t of set) if (!live.isOpen(t)) set.delete(t);
      set.add(token);
    },
    cut(agentId) {
      const tokens = tokensByAgent.get(agentId);
      tokensByAgent.delete(agentId);
      if (!tokens) return 0;
      return transport()?.dropConnections((peer) => tokens.has(peer.token)) ?? 0;
    },
  };
}
