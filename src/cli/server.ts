// cli/server: `coffre server`, starting a node.
import type { Command } from 'commander';

export function registerServerCommands(program: Command): void {
  program.command('server').description('start a coffre node');
}
