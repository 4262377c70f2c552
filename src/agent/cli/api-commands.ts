// `emblem-agent api fetch x509|jwt`, `api validate jwt`, `api watch`: Workload API clients for
// operators and scripts (the same calls any SPIFFE library makes).
import { Command } from 'commander';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { action, collect, parseOutputFormat, printJson, printRecords } from '../../common/cli/output.js';
import { parseDurationSeconds } from '../../common/duration.js';
import { resolveWorkloadEndpoint } from '../../common/endpoint-address.js';
import { invalidArgument } from '../../common/errors.js';
import { certificatesToPem, encodePem } from '../../common/pem.js';
import { splitDerCertificates } from '../../common/x509/chain.js';
import { connectWorkloadApi, type X509SvidResponseMsg } from './workload-client.js';

interface CommonFlags {
  socket?: string;
  output?: string;
  timeout?: string;
}

function withCommon(cmd: Command): Command {
  return cmd
    .option('--socket <path>', 'Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET, else /tmp/emblem-agent/public/api.sock)')
    .option('--timeout <duration>', 'how long to wait for an answer (default 5s)')
    .option('--output <format>', 'pretty or json');
}

const timeoutOf = (flags: CommonFlags): number => parseDurationSeconds(flags.timeout ?? '5', '--timeout') * 1000 || 5000;

function describeX509(res: X509SvidResponseMsg) {
  return res.svids.map((svid) => {
    const chain = splitDerCertificates(svid.x509_svid);
    const leaf = new X509Certificate(chain[0]!);
    return {
      spiffeId: svid.spiffe_id,
      hint: svid.hint,
      serial: leaf.serialNumber.toLowerCase(),
      notAfter: new Date(leaf.validTo).toISOString(),
      chainLength: chain.length,
      bundleCertificates: splitDerCertificates(svid.bundle).length,
    };
  });
}

function printX509(res: X509SvidResponseMsg, output: 'pretty' | 'json'): void {
  const svids = describeX509(res);
  const federated = Object.keys(res.federated_bundles).sort();
  if (output === 'json') {
    printJson({ svids, federatedBundles: federated });
    return;
  }
  process.stdout.write(`Received ${svids.length} SVID${svids.length === 1 ? '' : 's'}\n\n`);
  printRecords(
    svids.map((s) => ({
      'SPIFFE ID': s.spiffeId,
      Hint: s.hint,
      'SVID serial': s.serial,
      'Valid until': s.notAfter,
      'CA certificates': s.bundleCertificates,
      'Federated with': federated,
    })),
  );
}

/**
 * Writes svid.N.pem (chain), svid.N.key (0600), bundle.N.pem and federated_bundle.N.M.pem, like SPIRE.
 * Each file is a new file renamed into place: an existing file (say a 0644 key, or a symlink) is
 * replaced, never written through, so the key is 0600 whatever was there and whatever the umask.
 */
function writeX509(res: X509SvidResponseMsg, dir: string): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const written: string[] = [];
  const write = (name: string, data: string, mode = 0o644) => {
    const path = join(dir, name);
    const temp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    writeFileSync(temp, data, { mode, flag: 'wx' });
    try {
      chmodSync(temp, mode); // the umask may have narrowed a certificate's 0644; never widens a key
      renameSync(temp, path);
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
    written.push(path);
  };
  res.svids.forEach((svid, i) => {
    write(`svid.${i}.pem`, certificatesToPem(splitDerCertificates(svid.x509_svid)));
    write(`svid.${i}.key`, encodePem('PRIVATE KEY', svid.x509_svid_key), 0o600);
    write(`bundle.${i}.pem`, certificatesToPem(splitDerCertificates(svid.bundle)));
  });
  Object.keys(res.federated_bundles)
    .sort()
    .forEach((td, j) => write(`federated_bundle.0.${j}.pem`, certificatesToPem(splitDerCertificates(res.federated_bundles[td]!))));
  return written;
}

type StructValue = { stringValue?: string; numberValue?: number; boolValue?: boolean; nullValue?: unknown; listValue?: { values: StructValue[] }; structValue?: { fields: Record<string, StructValue> }; kind?: string };

export function structToJson(struct: { fields?: Record<string, StructValue> } | null | undefined): Record<string, unknown> {
  const value = (v: StructValue): unknown => {
    const kind = v.kind ?? Object.keys(v).find((k) => (v as Record<string, unknown>)[k] !== undefined);
    switch (kind) {
      case 'stringValue':
        return v.stringValue;
      case 'numberValue':
        return v.numberValue;
      case 'boolValue':
        return v.boolValue;
      case 'listValue':
        return (v.listValue?.values ?? []).map(value);
      case 'structValue':
        return structToJson(v.structValue);
      default:
        return null;
    }
  };
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, value(v)]));
}

export function apiCommand(): Command {
  const api = new Command('api').description('call the Workload API of the local agent');
  const fetch = api.command('fetch').description('fetch SVIDs');

  withCommon(fetch.command('x509', { isDefault: true }).description('fetch X.509-SVIDs and bundles'))
    .option('--write <dir>', 'write svid.N.pem, svid.N.key, bundle.N.pem there')
    .action(
      action(async (flags: CommonFlags & { write?: string }) => {
        const output = parseOutputFormat(flags.output);
        const client = connectWorkloadApi(resolveWorkloadEndpoint(flags.socket));
        try {
          const res = await client.fetchX509(timeoutOf(flags));
          printX509(res, output);
          if (flags.write) {
            const files = writeX509(res, flags.write);
            if (output !== 'json') process.stdout.write(`\nWrote ${files.length} files to ${flags.write}\n`);
          }
        } finally {
          client.close();
        }
      }),
    );

  withCommon(fetch.command('jwt').description('fetch JWT-SVIDs'))
    .option('--audience <aud>', 'audience (repeatable, required)', collect)
    .option('--spiffe-id <id>', 'only this identity')
    .action(
      action(async (flags: CommonFlags & { audience?: string[]; spiffeId?: string }) => {
        const output = parseOutputFormat(flags.output);
        if (!flags.audience?.length) throw invalidArgument('--audience is required');
        const client = connectWorkloadApi(resolveWorkloadEndpoint(flags.socket));
        try {
          const res = await client.fetchJwt(flags.audience, flags.spiffeId, timeoutOf(flags));
          if (output === 'json') printJson({ svids: res.svids.map((s) => ({ spiffeId: s.spiffe_id, hint: s.hint, token: s.svid })) });
          else for (const s of res.svids) process.stdout.write(`token(${s.spiffe_id}):\n\t${s.svid}\n`);
        } finally {
          client.close();
        }
      }),
    );

  const validate = api.command('validate').description('validate credentials');
  withCommon(validate.command('jwt').description('validate a JWT-SVID with the agent'))
    .requiredOption('--audience <aud>', 'the audience you expect')
    .requiredOption('--svid <token>', 'the JWT-SVID')
    .action(
      action(async (flags: CommonFlags & { audience: string; svid: string }) => {
        const output = parseOutputFormat(flags.output);
        const client = connectWorkloadApi(resolveWorkloadEndpoint(flags.socket));
        try {
          const res = await client.validateJwt(flags.audience, flags.svid, timeoutOf(flags));
          const claims = structToJson(res.claims as never);
          if (output === 'json') printJson({ spiffeId: res.spiffe_id, claims });
          else process.stdout.write(`SVID is valid.\nSPIFFE ID : ${res.spiffe_id}\nClaims    : ${JSON.stringify(claims)}\n`);
        } finally {
          client.close();
        }
      }),
    );

  withCommon(api.command('watch').description('print every X.509-SVID update until interrupted'))
    .action(
      action(async (flags: CommonFlags) => {
        const output = parseOutputFormat(flags.output);
        const client = connectWorkloadApi(resolveWorkloadEndpoint(flags.socket));
        await new Promise<void>((resolve, reject) => {
          const watch = client.watchX509(
            (res) => {
              if (output === 'json') printJson({ at: new Date().toISOString(), svids: describeX509(res) });
              else {
                process.stdout.write(`--- update at ${new Date().toISOString()}\n`);
                printX509(res, 'pretty');
              }
            },
            (err) => (err ? reject(err) : resolve()),
          );
          process.once('SIGINT', () => {
            watch.cancel();
            resolve();
          });
        });
        client.close();
      }),
    );
  return api;
}
