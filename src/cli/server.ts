// cli/server: `coffre server` — start a node (creating the embedded default on first start).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { generateSelfSignedCertificate } from '../api/tls.js';
import { loadConfig, parseBindAddress, resolveConfigPath } from '../config/config.js';
import { ensureDefaultConfig } from '../config/init.js';
import { startNode } from '../node/node.js';
import { UserError } from '../util/errors.js';

interface ServerOptions {
  config?: string;
  tlsSelfSigned?: boolean;
  tlsHostname?: string[];
  s3Bind?: string;
  adminBind?: string;
  rpcBind?: string;
}

// An address given on the command line, checked as the configuration's are (port 0: the system picks one).
function bindFlag(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  try {
    parseBindAddress(value, flag);
  } catch {
    throw new UserError(
      `${flag} "${value}" is not host:port (e.g. 127.0.0.1:3900, or port 0 for any free one)`,
    );
  }
  return value;
}

export function registerServerCommands(program: Command): void {
  program
    .command('server')
    .description('start a coffre node (creates ./coffre-data with a fresh configuration on first start)')
    .option(
      '-c, --config <file>',
      'configuration file (default: $COFFRE_CONFIG or ./coffre-data/coffre.toml)',
    )
    .option(
      '--tls-self-signed',
      'serve HTTPS with a self-signed certificate kept beside the config (made if missing)',
    )
    .option('--tls-hostname <name...>', 'extra host names or addresses for the self-signed certificate')
    .option('--s3-bind <host:port>', "listen for S3 here instead of the config's [s3_api] api_bind_addr")
    .option('--admin-bind <host:port>', 'listen for the admin API here instead of [admin] api_bind_addr')
    .option('--rpc-bind <host:port>', 'listen for RPC here instead of rpc_bind_addr')
    .action(async (opts: ServerOptions, cmd: Command) => {
      const flag = (cmd.optsWithGlobals() as ServerOptions).config;
      const configPath = resolveConfigPath(flag);
      if (!flag && !process.env.COFFRE_CONFIG) ensureDefaultConfig(configPath);
      const config = loadConfig(configPath);
      // The bound addresses are printed below; a flag changes this run only, never the file.
      config.s3Api.apiBindAddr = bindFlag(opts.s3Bind, '--s3-bind') ?? config.s3Api.apiBindAddr;
      config.admin.apiBindAddr = bindFlag(opts.adminBind, '--admin-bind') ?? config.admin.apiBindAddr;
      config.rpcBindAddr = bindFlag(opts.rpcBind, '--rpc-bind') ?? config.rpcBindAddr;
      if (opts.tlsSelfSigned) {
        if (config.s3Api.tlsCert)
          throw new UserError('--tls-self-signed conflicts with [s3_api] tls_cert in the config');
        const dir = join(dirname(configPath), 'tls');
        const files = existsSync(join(dir, 'cert.pem'))
          ? { certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem') }
          : await generateSelfSignedCertificate(dir, opts.tlsHostname ?? []);
        config.s3Api.tlsCert = files.certPath;
        config.s3Api.tlsKey = files.keyPath;
        process.stdout.write(
          `TLS: self-signed certificate ${files.certPath} (clients must trust it, e.g. aws --ca-bundle ${files.certPath})\n`,
        );
      }
      // A port that cannot be bound ends the start with one line naming its key (a ListenError), after the
      // node has stopped whatever it had started.
      const node = await startNode(config);
      const scheme = config.s3Api.tlsCert ? 'https' : 'http';
      const s3Url = `${scheme}://${node.addresses.s3}`;
      // Where the other ports are: a configuration asking for port 0 learns here which ones were picked.
      const otherPorts = `admin API on ${scheme}://${node.addresses.admin}, RPC on ${node.addresses.rpc}`;
      // A node holding a copy of the cluster's metadata gets the cluster's keys from the metadata node.
      if (node.replication.isPrimary() && node.model.listKeys().length === 0) {
        const key = await node.model.createKey('default', true);
        process.stdout.write(
          [
            `coffre is serving S3 on ${s3Url} (data in ${config.dataDir})`,
            otherPorts,
            'A first access key was created; its secret is shown only this once:',
            `  AWS_ACCESS_KEY_ID=${key.id}`,
            `  AWS_SECRET_ACCESS_KEY=${key.secret}`,
            `Try: AWS_ACCESS_KEY_ID=${key.id} AWS_SECRET_ACCESS_KEY=${key.secret} aws --endpoint-url ${s3Url} s3 ls`,
            '',
          ].join('\n'),
        );
      } else {
        process.stdout.write(`coffre is serving S3 on ${s3Url}\n${otherPorts}\n`);
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await node.stop();
    });
}
