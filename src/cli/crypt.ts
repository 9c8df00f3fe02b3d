// cli/crypt: `coffre crypt …`, client-side encryption for any S3 store or directory (git-annex design).
import type { Command } from 'commander';

export function registerCryptCommands(program: Command): void {
  program.command('crypt').description('client-side encryption for S3 stores and directories (not yet)');
}
