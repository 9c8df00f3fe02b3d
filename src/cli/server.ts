// cli/server: `coffre server` — start a node (creating the embedded default on first start).
import type { Command } from 'commander';
import { loadConfig, resolveConfigPath } from '../config/config.js';
import { ensureDefaultConfig } from '../config/init.js';
import { startNode } from '../node/node.js';
import { UserError, errorMessage } from '../util/errors.js';

export function registerServerCommands(program: Command): void {
  program
    .command('server')
    .description('start a coffre node (creates ./coffre-data with a fresh configuration on first start)')
    .option(
      '-c, --config <file>',
      'configuration file (default: $COFFRE_CONFIG or ./coffre-data/coffre.toml)',
    )
    .action(async (opts: { config?: string }) => {
      const configPath = resolveConfigPath(opts.config ?? program.opts().config);
      const explicit = Boolean(opts.config ?? process.env.COFFRE_CONFIG);
      if (!explicit) ensureDefaultConfig(configPath);
      const config = loadConfig(configPath);
      let node;
      try {
        node = await startNode(config);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE')
          throw new UserError(`cannot listen: ${errorMessage(err)} (is another coffre running?)`);
        if (code === 'EACCES') throw new UserError(`cannot listen: ${errorMessage(err)}`);
        throw err;
      }
      const scheme = config.s3Api.tlsCert ? 'https' : 'http';
      if (node.model.listKeys().length === 0) {
        const key = await node.model.createKey('default', true);
        process.stdout.write(
          [
            `coffre is serving S3 on ${scheme}://${config.s3Api.apiBindAddr} (data in ${config.dataDir})`,
            'A first access key was created; its secret is shown only this once:',
            `  AWS_ACCESS_KEY_ID=${key.id}`,
            `  AWS_SECRET_ACCESS_KEY=${key.secret}`,
            `Try: AWS_ACCESS_KEY_ID=${key.id} AWS_SECRET_ACCESS_KEY=${key.secret} aws --endpoint-url ${scheme}://${config.s3Api.apiBindAddr} s3 ls`,
            '',
          ].join('\n'),
        );
      } else {
        process.stdout.write(`coffre is serving S3 on ${scheme}://${config.s3Api.apiBindAddr}\n`);
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await node.stop();
    });
}
