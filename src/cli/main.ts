// cli: the coffre command. One file per command group registers its subcommands here.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { UserError, errorMessage } from '../util/errors.js';
import { registerServerCommands } from './server.js';
import { registerCryptCommands } from './crypt.js';
import { registerKeyCommands } from './key.js';
import { registerBucketCommands } from './bucket.js';
import { registerNodeCommands } from './node.js';
import { registerLayoutCommands } from './layout.js';
import { registerSseS3Commands } from './sse-s3.js';
import { registerLifecycleCommands } from './lifecycle.js';

// The version is package.json's, read where the package is installed (dist/src/cli/ is three levels down).
const COFFRE_VERSION = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export function buildProgram(): Command {
  const program = new Command('coffre')
    .description('coffre — encrypted S3-compatible object storage')
    // Only -V as the program's option: `--version` is also `coffre layout apply --version N`, and the
    // program's own options are taken wherever they appear. runCli reads a leading `--version` as -V.
    .version(`coffre ${COFFRE_VERSION}`, '-V', 'print the version (also --version, before any command)')
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
  registerLifecycleCommands(program);
  registerCryptCommands(program);
  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const args = argv[0] === '--version' ? ['-V', ...argv.slice(1)] : argv;
  try {
    await program.parseAsync(args, { from: 'user' });
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
