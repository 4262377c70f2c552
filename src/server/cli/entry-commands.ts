// `emblem-server entry create|update|delete|show|count`.
import { Command, Option } from 'commander';
import { action, collect, formatTime, parseOutputFormat, printJson, printRecords } from '../../common/cli/output.js';
import { parseDurationSeconds } from '../../common/duration.js';
import { invalidArgument } from '../../common/errors.js';
import { parseSelector } from '../../common/selectors.js';
import { serverId, parseSpiffeId } from '../../common/spiffe-id.js';
import type { EntryProto } from '../entries/convert.js';
import { connectAdmin } from './admin-client.js';
import { socketOption } from './options.js';

const MATCH_MODES: Record<string, string> = {
  superset: 'SELECTOR_MATCH_SUPERSET',
  exact: 'SELECTOR_MATCH_EXACT',
  subset: 'SELECTOR_MATCH_SUBSET',
  any: 'SELECTOR_MATCH_ANY',
};

interface EntryFlags {
  spiffeId?: string;
  parentId?: string;
  node?: boolean;
  selector?: string[];
  x509SvidTtl?: string;
  jwtSvidTtl?: string;
  dns?: string[];
  federatesWith?: string[];
  hint?: string;
  admin?: boolean;
  downstream?: boolean;
  entryExpiry?: string;
  entryId?: string;
  socket: string;
  output?: string;
}

function entryFieldOptions(cmd: Command): Command {
  return cmd
    .option('--spiffe-id <id>', 'SPIFFE ID the entry issues')
    .option('--parent-id <id>', 'agent ID, node alias or parent entry SPIFFE ID')
    .option('--node', 'make this a node alias entry (parent is the server)')
    .option('--selector <type:value>', 'selector (repeatable)', collect)
    .option('--x509-svid-ttl <duration>', 'X.509-SVID lifetime (e.g. 3600 or 1h); 0 = server default')
    .option('--jwt-svid-ttl <duration>', 'JWT-SVID lifetime; 0 = server default')
    .option('--dns <name>', 'DNS SAN (repeatable)', collect)
    .option('--federates-with <td>', 'trust domain whose bundle workloads receive (repeatable)', collect)
    .option('--hint <hint>', 'hint shown to workloads with several identities')
    .option('--admin', 'SVIDs of this entry may call the admin API over mTLS')
    .option('--downstream', 'SVIDs of this entry may act as a downstream authority')
    .option('--entry-expiry <unix-seconds>', 'the entry stops being served after this time');
}

function applyFlags(base: Partial<EntryProto>, flags: EntryFlags, socketTrustDomain?: string): Partial<EntryProto> {
  const out = { ...base };
  if (flags.spiffeId !== undefined) out.spiffe_id = flags.spiffeId;
  if (flags.node) {
    const td = socketTrustDomain ?? (flags.spiffeId ? parseSpiffeId(flags.spiffeId).trustDomain : undefined);
    if (!td) throw invalidArgument('--node needs --spiffe-id');
    out.parent_id = serverId(td);
  } else if (flags.parentId !== undefined) out.parent_id = flags.parentId;
  if (flags.selector) out.selectors = flags.selector.map(parseSelector);
  if (flags.x509SvidTtl !== undefined) out.x509_svid_ttl = parseDurationSeconds(flags.x509SvidTtl, '--x509-svid-ttl');
  if (flags.jwtSvidTtl !== undefined) out.jwt_svid_ttl = parseDurationSeconds(flags.jwtSvidTtl, '--jwt-svid-ttl');
  if (flags.dns) out.dns_names = flags.dns;
  if (flags.federatesWith) out.federates_with = flags.federatesWith;
  if (flags.hint !== undefined) out.hint = flags.hint;
  if (flags.admin !== undefined) out.admin = flags.admin;
  if (flags.downstream !== undefined) out.downstream = flags.downstream;
  if (flags.entryExpiry !== undefined) {
    if (!/^\d+$/.test(flags.entryExpiry)) throw invalidArgument('--entry-expiry must be Unix seconds');
    out.expires_at = Number(flags.entryExpiry);
  }
  return out;
}

export function entryRecord(e: EntryProto): Record<string, unknown> {
  return {
    'Entry ID': e.id,
    'SPIFFE ID': e.spiffe_id,
    'Parent ID': e.parent_id,
    Revision: e.revision,
    'X509-SVID TTL': e.x509_svid_ttl || 'default',
    'JWT-SVID TTL': e.jwt_svid_ttl || 'default',
    Selectors: e.selectors.map((s) => `${s.type}:${s.value}`),
    'DNS names': e.dns_names,
    'Federates with': e.federates_with,
    Hint: e.hint,
    Admin: e.admin ? 'true' : undefined,
    Downstream: e.downstream ? 'true' : undefined,
    'Expires at': formatTime(e.expires_at),
    'Created at': formatTime(e.created_at),
  };
}

function filterFrom(flags: { spiffeId?: string; parentId?: string; selector?: string[]; match?: string }) {
  const match = MATCH_MODES[flags.match ?? 'superset'];
  if (!match) throw invalidArgument('--match must be superset, exact, subset or any');
  return {
    spiffe_id: flags.spiffeId ?? '',
    parent_id: flags.parentId ?? '',
    selectors: (flags.selector ?? []).map(parseSelector),
    selector_match: match,
  };
}

export function entryCommand(): Command {
  const entry = new Command('entry').description('manage registration entries');

  entryFieldOptions(socketOption(entry.command('create').description('create a registration entry')))
    .addOption(new Option('--entry-id <id>', 'use this entry ID instead of a generated one'))
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: EntryFlags) => {
        const output = parseOutputFormat(flags.output);
        if (!flags.spiffeId) throw invalidArgument('--spiffe-id is required');
        if (!flags.parentId && !flags.node) throw invalidArgument('--parent-id (or --node) is required');
        if (!flags.selector?.length) throw invalidArgument('at least one --selector is required');
        const input = applyFlags({ id: flags.entryId ?? '' }, flags);
        const client = connectAdmin(flags.socket);
        try {
          const created = await client.call<EntryProto>('CreateEntry', input);
          if (output === 'json') printJson(created);
          else process.stdout.write(created.id + '\n');
        } finally {
          client.close();
        }
      }),
    );

  entryFieldOptions(socketOption(entry.command('update').description('change fields of an entry (others keep their values)')))
    .requiredOption('--id <id>', 'entry ID')
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: EntryFlags & { id: string }) => {
        const output = parseOutputFormat(flags.output);
        const client = connectAdmin(flags.socket);
        try {
          const current = await client.call<EntryProto>('GetEntry', { id: flags.id });
          const updated = await client.call<EntryProto>('UpdateEntry', applyFlags(current, flags));
          if (output === 'json') printJson(updated);
          else printRecords([entryRecord(updated)]);
        } finally {
          client.close();
        }
      }),
    );

  socketOption(entry.command('delete').description('delete an entry'))
    .requiredOption('--id <id>', 'entry ID')
    .action(
      action(async (flags: { id: string; socket: string }) => {
        const client = connectAdmin(flags.socket);
        try {
          await client.call('DeleteEntry', { id: flags.id });
          process.stdout.write(`deleted ${flags.id}\n`);
        } finally {
          client.close();
        }
      }),
    );

  socketOption(entry.command('show').description('show entries (all, or those matching the filters)'))
    .option('--id <id>', 'one entry by ID')
    .option('--spiffe-id <id>', 'filter by SPIFFE ID')
    .option('--parent-id <id>', 'filter by parent ID')
    .option('--selector <type:value>', 'filter by selector (repeatable)', collect)
    .option('--match <mode>', 'how selectors match: superset (default), exact, subset, any')
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: { id?: string; spiffeId?: string; parentId?: string; selector?: string[]; match?: string; socket: string; output?: string }) => {
        const output = parseOutputFormat(flags.output);
        const client = connectAdmin(flags.socket);
        try {
          let entries: EntryProto[] = [];
          if (flags.id) entries = [await client.call<EntryProto>('GetEntry', { id: flags.id })];
          else {
            const filter = filterFrom(flags);
            let token = '';
            do {
              const page = await client.call<{ entries: EntryProto[]; next_page_token: string }>('ListEntries', { ...filter, page_size: 1000, page_token: token });
              entries.push(...page.entries);
              token = page.next_page_token;
            } while (token);
          }
          if (output === 'json') printJson({ entries });
          else {
            process.stdout.write(`Found ${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}\n`);
            if (entries.length) process.stdout.write('\n');
            printRecords(entries.map(entryRecord));
          }
        } finally {
          client.close();
        }
      }),
    );

  socketOption(entry.command('count').description('count entries (all, or those matching the filters)'))
    .option('--spiffe-id <id>', 'filter by SPIFFE ID')
    .option('--parent-id <id>', 'filter by parent ID')
    .option('--selector <type:value>', 'filter by selector (repeatable)', collect)
    .option('--match <mode>', 'superset (default), exact, subset, any')
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: { spiffeId?: string; parentId?: string; selector?: string[]; match?: string; socket: string; output?: string }) => {
        const output = parseOutputFormat(flags.output);
        const client = connectAdmin(flags.socket);
        try {
          const { count } = await client.call<{ count: number }>('CountEntries', filterFrom(flags));
          if (output === 'json') printJson({ count });
          else process.stdout.write(`${count}\n`);
        } finally {
          client.close();
        }
      }),
    );
  return entry;
}
