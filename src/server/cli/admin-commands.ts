// `emblem-server token|agent|bundle|authority|svid|healthcheck`: thin clients of the Admin API.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { action, formatTime, parseOutputFormat, printJson, printRecords } from '../../common/cli/output.js';
import { decodeSpiffeBundle } from '../../common/bundle-json.js';
import { parseDurationSeconds } from '../../common/duration.js';
import { invalidArgument } from '../../common/errors.js';
import { probeHealth } from '../../common/observability/http-endpoint.js';
import { certificatesToPem } from '../../common/pem.js';
import { connectAdmin, type AdminClient } from './admin-client.js';
import { socketOption } from './options.js';

type Flags = { socket: string; output?: string } & Record<string, unknown>;

/** Declares a client command: opens the admin connection, runs `fn`, prints JSON or text. */
function clientCommand(
  parent: Command,
  name: string,
  description: string,
  configure: (cmd: Command) => Command,
  fn: (client: AdminClient, flags: Flags) => Promise<{ json: unknown; text: () => void }>,
): void {
  configure(socketOption(parent.command(name).description(description)))
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: Flags) => {
        const output = parseOutputFormat(flags.output);
        const client = connectAdmin(flags.socket);
        try {
          const result = await fn(client, flags);
          if (output === 'json') printJson(result.json);
          else result.text();
        } finally {
          client.close();
        }
      }),
    );
}

interface AgentMsg {
  id: string;
  attestation_type: string;
  selectors: { type: string; value: string }[];
  svid_serial: string;
  svid_expires_at: number;
  banned: boolean;
  last_seen: number;
  created_at: number;
  can_reattest: boolean;
}

const agentRecord = (a: AgentMsg) => ({
  'Agent ID': a.id,
  'Attestation type': a.attestation_type,
  Selectors: a.selectors.map((s) => `${s.type}:${s.value}`),
  'SVID serial': a.svid_serial,
  'SVID expires at': formatTime(a.svid_expires_at),
  Banned: a.banned ? 'true' : 'false',
  'Can re-attest': a.can_reattest ? 'true' : 'false',
  'Last seen': formatTime(a.last_seen),
});

interface AuthorityMsg {
  id: string;
  kind: string;
  status: string;
  not_before: number;
  not_after: number;
}

const authorityRecord = (a: AuthorityMsg) => ({
  'Authority ID': a.id,
  Kind: a.kind,
  Status: a.status,
  'Not before': formatTime(a.not_before),
  'Not after': formatTime(a.not_after),
});

const authorityJson = (a: AuthorityMsg) => ({ id: a.id, kind: a.kind, status: a.status, notBefore: a.not_before, notAfter: a.not_after });

export function tokenCommand(): Command {
  const token = new Command('token').description('manage join tokens');
  clientCommand(
    token,
    'generate',
    'generate a single-use join token for attesting an agent',
    (c) => c.option('--ttl <duration>', 'token lifetime (default 600 s)'),
    async (client, flags) => {
      const ttl = flags['ttl'] === undefined ? 0 : parseDurationSeconds(String(flags['ttl']), '--ttl');
      if (flags['ttl'] !== undefined && ttl < 1) throw invalidArgument('--ttl must be at least 1 second');
      const res = await client.call<{ token: string; agent_id: string; expires_at: number }>('CreateJoinToken', { ttl });
      return {
        json: { token: res.token, agentId: res.agent_id, expiresAt: res.expires_at },
        text: () => process.stdout.write(`${res.token}\n`),
      };
    },
  );
  return token;
}

export function agentCommand(): Command {
  const agent = new Command('agent').description('manage attested agents');
  clientCommand(agent, 'list', 'list attested agents', (c) => c, async (client) => {
    const agents: AgentMsg[] = [];
    let token = '';
    do {
      const page = await client.call<{ agents: AgentMsg[]; next_page_token: string }>('ListAgents', { page_size: 1000, page_token: token });
      agents.push(...page.agents);
      token = page.next_page_token;
    } while (token);
    return {
      json: { agents },
      text: () => {
        process.stdout.write(`Found ${agents.length} attested agent${agents.length === 1 ? '' : 's'}\n${agents.length ? '\n' : ''}`);
        printRecords(agents.map(agentRecord));
      },
    };
  });
  for (const [name, method, description] of [
    ['show', 'GetAgent', 'show one agent'],
    ['evict', 'EvictAgent', 'delete an agent; it must attest again (join-token agents cannot)'],
    ['ban', 'BanAgent', 'ban an agent: its connections are cut and it can never renew or re-attest'],
  ] as const) {
    clientCommand(agent, name, description, (c) => c.requiredOption('--id <agent-id>', 'agent SPIFFE ID'), async (client, flags) => {
      const res = await client.call<AgentMsg>(method, { id: flags['id'] });
      if (name === 'show') return { json: res, text: () => printRecords([agentRecord(res)]) };
      return { json: { id: flags['id'], result: name === 'ban' ? 'banned' : 'evicted' }, text: () => process.stdout.write(`${name === 'ban' ? 'banned' : 'evicted'} ${String(flags['id'])}\n`) };
    });
  }
  return agent;
}

export function bundleCommand(): Command {
  const bundle = new Command('bundle').description('show the trust bundle and manage federated bundles');
  clientCommand(
    bundle,
    'show',
    "show the server's trust bundle",
    (c) => c.option('--format <format>', 'pem (default) or spiffe'),
    async (client, flags) => {
      const format = (flags['format'] as string | undefined) ?? 'pem';
      if (format !== 'pem' && format !== 'spiffe') throw invalidArgument('--format must be pem or spiffe');
      const res = await client.call<{ bundle: Buffer; sequence: number }>('GetBundle');
      const json = res.bundle.toString('utf8');
      return {
        json: JSON.parse(json),
        text: () => {
          if (format === 'spiffe') process.stdout.write(JSON.stringify(JSON.parse(json), null, 2) + '\n');
          else process.stdout.write(certificatesToPem(decodeSpiffeBundle('bundle.local', json).x509Authorities));
        },
      };
    },
  );
  clientCommand(bundle, 'list', 'list federated bundles', (c) => c, async (client) => {
    const res = await client.call<{ bundles: Record<string, Buffer> }>('ListFederatedBundles');
    const bundles = Object.fromEntries(Object.entries(res.bundles).map(([td, b]) => [td, JSON.parse(b.toString('utf8'))]));
    return { json: { bundles }, text: () => process.stdout.write(Object.keys(bundles).sort().join('\n') + (Object.keys(bundles).length ? '\n' : '')) };
  });
  clientCommand(
    bundle,
    'set',
    'set the bundle of a federated trust domain (SPIFFE bundle JSON or PEM)',
    (c) => c.requiredOption('--trust-domain <td>', 'federated trust domain').requiredOption('--path <file>', 'bundle file'),
    async (client, flags) => {
      const bytes = readFileSync(String(flags['path']));
      await client.call('SetFederatedBundle', { trust_domain: flags['trustDomain'], bundle: bytes });
      return { json: { trustDomain: flags['trustDomain'] }, text: () => process.stdout.write(`bundle set for ${String(flags['trustDomain'])}\n`) };
    },
  );
  clientCommand(bundle, 'delete', 'delete a federated bundle', (c) => c.requiredOption('--trust-domain <td>', 'federated trust domain'), async (client, flags) => {
    await client.call('DeleteFederatedBundle', { trust_domain: flags['trustDomain'] });
    return { json: { trustDomain: flags['trustDomain'] }, text: () => process.stdout.write(`bundle deleted for ${String(flags['trustDomain'])}\n`) };
  });
  return bundle;
}

export function authorityCommand(): Command {
  const authority = new Command('authority').description('show and rotate the signing authorities (X.509 CA, JWT keys)');
  clientCommand(authority, 'show', 'list authorities and their status', (c) => c, async (client) => {
    const res = await client.call<{ authorities: AuthorityMsg[] }>('ListAuthorities');
    return { json: { authorities: res.authorities.map(authorityJson) }, text: () => printRecords(res.authorities.map(authorityRecord)) };
  });
  clientCommand(authority, 'prepare', 'prepare the next authority (published in the bundle at once)', (c) => c.option('--kind <kind>', 'x509 (default) or jwt'), async (client, flags) => {
    const res = await client.call<AuthorityMsg>('PrepareAuthority', { kind: flags['kind'] ?? 'x509' });
    return { json: authorityJson(res), text: () => printRecords([authorityRecord(res)]) };
  });
  for (const [name, method, description] of [
    ['activate', 'ActivateAuthority', 'start signing with a prepared authority'],
    ['taint', 'TaintAuthority', 'taint an old authority: agents re-key everything it signed'],
    ['revoke', 'RevokeAuthority', 'remove a tainted authority from the bundle'],
  ] as const) {
    clientCommand(authority, name, description, (c) => c.requiredOption('--id <authority-id>', 'authority ID (see authority show)'), async (client, flags) => {
      const res = await client.call<AuthorityMsg>(method, { id: flags['id'] });
      return { json: authorityJson(res), text: () => printRecords([authorityRecord(res)]) };
    });
  }
  return authority;
}

interface SvidMsg {
  serial: string;
  spiffe_id: string;
  entry_id: string;
  agent_id: string;
  kind: string;
  not_before: number;
  not_after: number;
  authority_id: string;
  issued_at: number;
}

export function svidCommand(): Command {
  const svid = new Command('svid').description('the issuance ledger: every SVID the server signed');
  clientCommand(
    svid,
    'list',
    'list issued SVIDs',
    (c) =>
      c
        .option('--spiffe-id <id>', 'only SVIDs of this SPIFFE ID')
        .option('--agent-id <id>', 'only SVIDs requested by this agent')
        .option('--expiring-within <duration>', 'only unexpired SVIDs that expire within this time (e.g. 10m)')
        .option('--limit <n>', 'at most this many (default: all)'),
    async (client, flags) => {
      const within = flags['expiringWithin'] === undefined ? 0 : parseDurationSeconds(String(flags['expiringWithin']), '--expiring-within');
      const limit = flags['limit'] === undefined ? Infinity : Number(flags['limit']);
      if (!(limit > 0)) throw invalidArgument('--limit must be a positive number');
      const svids: SvidMsg[] = [];
      let token = '';
      do {
        const page = await client.call<{ svids: SvidMsg[]; next_page_token: string }>('ListSVIDs', {
          spiffe_id: flags['spiffeId'] ?? '',
          agent_id: flags['agentId'] ?? '',
          expiring_within: within,
          page_size: 1000,
          page_token: token,
        });
        svids.push(...page.svids);
        token = page.next_page_token;
      } while (token && svids.length < limit);
      const shown = svids.slice(0, Number.isFinite(limit) ? limit : undefined);
      return {
        json: { svids: shown },
        text: () => {
          process.stdout.write(`Found ${shown.length} SVID${shown.length === 1 ? '' : 's'}\n${shown.length ? '\n' : ''}`);
          printRecords(
            shown.map((s) => ({
              Serial: s.serial,
              'SPIFFE ID': s.spiffe_id,
              Kind: s.kind,
              'Entry ID': s.entry_id,
              'Agent ID': s.agent_id,
              'Not after': formatTime(s.not_after),
              Authority: s.authority_id,
            })),
          );
        },
      };
    },
  );
  return svid;
}

export function healthcheckCommand(): Command {
  const cmd = new Command('healthcheck').description(
    'exit 0 when the server is ready (datastore answers, an authority is active); over the admin socket, or an HTTP /ready URL',
  );
  socketOption(cmd)
    .option('--url <url>', "check this /ready URL instead (the server's --health-bind listener)")
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: Flags) => {
        const output = parseOutputFormat(flags.output);
        let res: { ok: boolean; checks: { name: string; ok: boolean; detail: string }[] };
        if (typeof flags['url'] === 'string') res = await probeHealth(flags['url'], 5_000);
        else {
          const client = connectAdmin(flags.socket, 5_000);
          try {
            const health = await client.call<{ ready: boolean; checks: { name: string; ok: boolean; detail: string }[] }>('GetHealth');
            res = { ok: health.ready, checks: health.checks };
          } finally {
            client.close();
          }
        }
        if (output === 'json') printJson(res);
        else for (const c of res.checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? ': ' + c.detail : ''}\n`);
        if (!res.ok) process.exit(1);
      }),
    );
  return cmd;
}
