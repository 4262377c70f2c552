// The emblem-agent command line.
import 'reflect-metadata';
import { Command } from 'commander';
import { action, parseOutputFormat, printJson } from '../../common/cli/output.js';
import { resolveWorkloadEndpoint, grpcTarget } from '../../common/endpoint-address.js';
import { createLogger } from '../../common/logger.js';
import { probeHealth } from '../../common/observability/http-endpoint.js';
import { startAgent } from '../agent.js';
import { AGENT_CONFIG_OPTIONS, loadAgentConfig } from '../config.js';
import { apiCommand } from './api-commands.js';
import { checkWorkloadApiHealth } from './health-client.js';

function runCommand(): Command {
  const run = new Command('run').description('run the agent in the foreground').option('--config <file>', 'YAML config file');
  for (const o of AGENT_CONFIG_OPTIONS) {
    const flag = o.kind === 'boolean' ? `--${o.flag}` : `--${o.flag} <value>`;
    run.option(flag, o.description + (o.defaultText ? ` (default ${o.defaultText})` : ''));
  }
  run.action(
    action(async (opts: Record<string, unknown>) => {
      const flags: Record<string, unknown> = {};
      for (const o of AGENT_CONFIG_OPTIONS) flags[o.key] = opts[o.key];
      const config = loadAgentConfig({ configFile: opts['config'] as string | undefined, flags });
      const logger = createLogger({ level: config.logLevel, format: config.logFormat, name: 'emblem-agent' });
      if (config.insecureBootstrap) {
        logger.warn('--insecure-bootstrap: the server certificate is not verified on first contact (unsafe; use --trust-bundle)');
      }
      const agent = await startAgent(config, logger);
      let stopping = false;
      const stop = (code: number) => {
        if (stopping) return;
        stopping = true;
        agent.close().finally(() => process.exit(code));
      };
      process.on('SIGINT', () => stop(0));
      process.on('SIGTERM', () => stop(0));
      const ended = await agent.terminated;
      logger.error({ reason: ended.reason }, ended.message);
      stop(2);
    }),
  );
  return run;
}

function healthcheckCommand(): Command {
  return new Command('healthcheck')
    .description('exit 0 when the agent is ready (Workload API health over the socket, or an HTTP /ready URL)')
    .option('--socket <path>', 'Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET, else /tmp/emblem-agent/public/api.sock)')
    .option('--url <url>', 'check this /ready URL instead (the agent\'s --health-bind listener)')
    .option('--output <format>', 'pretty or json')
    .action(
      action(async (flags: { socket?: string; url?: string; output?: string }) => {
        const output = parseOutputFormat(flags.output);
        const report = flags.url ? await probeHealth(flags.url, 5000) : await checkWorkloadApiHealth(grpcTarget(resolveWorkloadEndpoint(flags.socket)), 5000);
        if (output === 'json') printJson(report);
        else for (const c of report.checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? ': ' + c.detail : ''}\n`);
        if (!report.ok) process.exit(1);
      }),
    );
}

const program = new Command('emblem-agent').description('Emblem agent: node attestation and the SPIFFE Workload API').showHelpAfterError();
program.addCommand(runCommand());
program.addCommand(apiCommand());
program.addCommand(healthcheckCommand());
await program.parseAsync(process.argv);
