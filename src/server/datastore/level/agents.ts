// Attested agents. touchAgent records liveness without a change event: agents do not sync it.
import { notFound } from '../../../common/errors.js';
import type { Datastore } from '../types.js';
import { decodeAgent, encodeAgent } from './codec.js';
import type { StoreContext } from './context.js';
import { AGENT_PREFIX, agentKey, prefixRange, requireKeyPart, requireTime } from './keys.js';
import { decodePageToken, encodePageToken, pageRange, pageSize } from './paging.js';

type AgentMethods = Pick<Datastore, 'putAgent' | 'getAgent' | 'listAgents' | 'deleteAgent' | 'touchAgent'>;

export function agentMethods(ctx: StoreContext): AgentMethods {
  return {
    putAgent: async (agent) => {
      const id = requireKeyPart('agent id', agent.id);
      const value = encodeAgent(agent);
      return ctx.write(async (tx) => {
        tx.put(agentKey(id), value);
        tx.change('agent', id, false);
      });
    },

    getAgent: async (id) => {
      const stored = await ctx.db.get(agentKey(id));
      return stored === undefined ? undefined : decodeAgent(stored);
    },

    listAgents: async (page = {}) => {
      const size = pageSize(page.pageSize);
      const range = prefixRange(AGENT_PREFIX);
      const after = decodePageToken(page.pageToken, range);
      const rows = await ctx.db.iterator({ ...pageRange(range, after), limit: size + 1 }).all();
      const items = rows.slice(0, size).map(([, value]) => decodeAgent(value));
      const nextPageToken = rows.length > size ? encodePageToken(rows[size - 1][0]) : '';
      return { items, nextPageToken };
    },

    deleteAgent: async (id) =>
      ctx.write(async (tx) => {
        if ((await tx.get(agentKey(id))) === undefined) throw notFound(`agent ${id} not found`);
        tx.del(agentKey(id));
        tx.change('agent', id, true);
      }),

    touchAgent: async (id, lastSeen) => {
      requireTime('lastSeen', lastSeen);
      return ctx.write(async (tx) => {
        const stored = await tx.get(agentKey(id));
        if (stored === undefined) throw notFound(`agent ${id} not found`);
        tx.put(agentKey(id), encodeAgent({ ...decodeAgent(stored), lastSeen }));
      });
    },
  };
}
