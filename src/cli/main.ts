// cli: the coffre command. One file per command group registers its subcommands here.
import { Command, CommanderError } from 'commander';
import { UserError, errorMessage } from '../util/errors.js';
import { registerServerCommands } from './server.js';
import { registerCryptCommands } from './crypt.js';
import { registerKeyCommands } from './key.js';
import { registerBucketCommands } from './bucket.js';
import { registerNodeCommands } from './node.js';
import { registerLayoutCommands } from './layout.js';
import { registerSseS3Commands } from './sse-s3.js';

const COFFRE_VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('coffre')
    .description('coffre — encrypted S3-compatible object storage')
    // Only -V: `--version` is taken by `coffre layout apply --version N`.
    .version(COFFRE_VERSION, '-V', 'print the version')
    .showSuggestionAfterError()
    .exitOverride();
  program.configureOutput({ outputError: (str, write) => write(str.trim().split('\n')[0] + '\n') });
  program.option(
    '-c, --config <file>',
    'node configuration (default: $COFFRE_CONFIG or ./coffre-data/coffre.toml)',
  );
  registerServerCommands(program);
  registerKeyCommands(program);
  registerBucketCommands(program);
  registerNodeCommands(program);
  registerLayoutCommands(program);
  registerSseS3Commands(program);
  registerCryptCommands(program);
  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed its one-line message; help and version exit 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`coffre: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`coffre: unexpected error: ${errorMessage(err)}\n`);
    if (process.env.COFFRE_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return 70;
  }
}

const exitCode = await runCli(process.argv.slice(2));
if (exitCode !== 0 || !process.exitCode) process.exitCode = exitCode;
