// The emblem-server command line.
import 'reflect-metadata';
import { Command } from 'commander';
import { action } from '../../common/cli/output.js';
import { kebabToCamel } from '../../common/config-file.js';
import { createLogger } from '../../common/logger.js';
import { loadServerConfig } from '../config.js';
import { startServer } from '../server.js';
import { agentCommand, authorityCommand, bundleCommand, healthcheckCommand, svidCommand, tokenCommand } from './admin-commands.js';
import { entryCommand } from './entry-commands.js';

const RUN_FLAGS = [
  ['--trust-domain <td>', 'trust domain (e.g. example.org)'],
  ['--bind <host:port>', 'agent-facing API listener (default 127.0.0.1:8081)'],
  ['--socket <path>', 'admin socket (default /tmp/emblem-server/private/api.sock)'],
  ['--data-dir <dir>', 'data directory (default ./.emblem/server)'],
  ['--log-level <level>', 'trace, debug, info (default), warn, error'],
  ['--log-format <format>', 'json (default) or pretty'],
  ['--ca-ttl <duration>', 'CA lifetime (default 24h)'],
  ['--x509-svid-ttl <duration>', 'default X.509-SVID lifetime (default 1h)'],
  ['--jwt-svid-ttl <duration>', 'default JWT-SVID lifetime (default 5m)'],
  ['--agent-svid-ttl <duration>', 'agent SVID lifetime (default 1h)'],
  ['--upstream-cert <file>', 'PEM certificate of an upstream CA (the server CA becomes its intermediate)'],
  ['--upstream-key <file>', 'PEM private key of the upstream CA'],
  ['--metrics-bind <host:port>', 'serve Prometheus metrics here'],
  ['--health-bind <host:port>', 'serve /live and /ready here'],
  ['--join-token-ttl <duration>', 'default join token lifetime (default 600s)'],
  ['--rotation-interval <duration>', 'how often CA rotation is checked (default 10s)'],
  ['--attestation-rate-limit <n>', 'attestation attempts per source address per minute (default 60)'],
  ['--x509pop-ca-bundles <file...>', 'x509pop CA-signed model: PEM files of trusted CAs'],
  ['--x509pop-pinned <sha256...>', 'x509pop pinned model: SHA-256 fingerprints of accepted self-signed certificates'],
  ['--csr-verify-workers <n>', 'threads that check CSR signatures; 0 checks them on the main thread (default: CPU threads, at most 4)'],
] as const;

export function buildProgram(): Command {
  const program = new Command('emblem-server').description('Emblem server: the SPIFFE trust domain authority').showHelpAfterError();
  const run = program.command('run').description('run the server in the foreground').option('--config <file>', 'YAML config file');
  for (const [flag, help] of RUN_FLAGS) run.option(flag, help);
  run.action(
    action(async (opts: Record<string, string | undefined>) => {
      const flags: Record<string, unknown> = {};
      for (const [flag] of RUN_FLAGS) {
        const key = kebabToCamel(flag.slice(2).split(' ')[0]!);
        flags[key] = opts[key];
      }
      const config = loadServerConfig(opts['config'], flags);
      const logger = createLogger({ level: config.logLevel, format: config.logFormat, name: 'emblem-server' });
      const server = await startServer(config, logger);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        server.close().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'error while stopping');
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
    }),
  );
  program.addCommand(tokenCommand());
  program.addCommand(entryCommand());
  program.addCommand(agentCommand());
  program.addCommand(bundleCommand());
  program.addCommand(authorityCommand());
  program.addCommand(svidCommand());
  program.addCommand(healthcheckCommand());
  return program;
}

await buildProgram().parseAsync(process.argv);
