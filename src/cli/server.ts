// cli/server: `coffre server` — start a node (creating the embedded default on first start).
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { generateSelfSignedCertificate } from '../api/tls.js';
import { loadConfig, parseBindAddress, resolveConfigPath, type CoffreConfig } from '../config/config.js';
import { ensureDefaultConfig } from '../config/init.js';
import { UserError } from '../util/errors.js';
import { reachableHostPort } from '../util/http-server.js';

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
      // Loaded here, not at start-up: the server (AWS SDK, LMDB, metrics) costs every other command, such as a
      // `crypt get`, most of a second of CPU to load.
      const { startNode } = await import('../node/node.js');
      const node = await startNode(config);
      const scheme = config.s3Api.tlsCert ? 'https' : 'http';
      const s3Url = `${scheme}://${node.addresses.s3}`;
      // Where the other ports are: a configuration asking for port 0 learns here which ones were picked.
      const otherPorts = `admin API on ${scheme}://${node.addresses.admin}, RPC on ${node.addresses.rpc}`;
      // A node holding a copy of the cluster's metadata gets the cluster's keys from the metadata leader, and
      // so does a node that joins a cluster: a key made here would be replaced by the cluster's tables. A
      // gateway in front of a backend keeps its keys there, with the other gateways'.
      const keys = config.backend ? node.store : node.model;
      const joining = config.bootstrapPeers.length > 0;
      if (!joining && node.replication.isPrimary() && (await keys.listKeys()).length === 0) {
        const key = await keys.createKey('default', true);
        process.stdout.write(
          [
            `coffre is serving S3 on ${s3Url} (data in ${config.dataDir})`,
            otherPorts,
            'A first access key was created; its secret is shown only this once:',
            `  AWS_ACCESS_KEY_ID=${key.id}`,
            `  AWS_SECRET_ACCESS_KEY=${key.secret}`,
            `Try: ${tryCommand(key, config, node.addresses.s3)}`,
            '',
          ].join('\n'),
        );
      } else {
        process.stdout.write(`coffre is serving S3 on ${s3Url}\n${otherPorts}\n`);
        if (joining && node.model.listKeys().length === 0)
          process.stdout.write(
            'This node joins a cluster (bootstrap_peers): it has no access key of its own; once it is in the ' +
              'layout, `coffre key create NAME` on any node makes one that works on every node\n',
          );
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await node.stop();
    });
}

// A command that works exactly as printed with aws CLI 2 on a machine with no AWS configuration: the region is
// given (without one, `aws s3 mb` sends a location constraint this node refuses), the endpoint is one a client
// on this machine reaches (not a wildcard bind), and a certificate that carries its own root (a self-signed
// one) is named for --ca-bundle.
function tryCommand(key: { id: string; secret: string }, config: CoffreConfig, boundS3: string): string {
  const cert = config.s3Api.tlsCert;
  const scheme = config.s3Api.tlsCert ? 'https' : 'http';
  const endpoint = shellWord(`${scheme}://${reachableHostPort(boundS3)}`);
  return [
    `AWS_ACCESS_KEY_ID=${key.id}`,
    `AWS_SECRET_ACCESS_KEY=${key.secret}`,
    `AWS_DEFAULT_REGION=${shellWord(config.s3Api.s3Region)}`,
    'aws',
    `--endpoint-url ${endpoint}`,
    ...(cert && carriesItsRoot(cert) ? [`--ca-bundle ${shellWord(cert)}`] : []),
    's3 ls',
  ].join(' ');
}

// A word the shell takes as it is: quoted when it holds anything but letters, digits and -_./:=@,
// (an IPv6 endpoint's brackets are a glob, a path may hold spaces).
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// True when the PEM file ends with a self-signed certificate: clients trust it only if told to. A chain from a
// public CA ends below the root, which clients already hold (and naming it as the only bundle would break them).
function carriesItsRoot(certPath: string): boolean {
  const pems = readFileSync(certPath, 'utf8').match(
    /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g,
  );
  const last = pems?.at(-1);
  if (!last) return false;
  const cert = new X509Certificate(last);
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}
