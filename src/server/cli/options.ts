// Options shared by the emblem-server client commands.
import type { Command } from 'commander';
import { SERVER_DEFAULTS } from '../config.js';

export function socketOption(cmd: Command): Command {
  return cmd.option('--socket <path>', 'admin socket of the server', SERVER_DEFAULTS.socket);
}
