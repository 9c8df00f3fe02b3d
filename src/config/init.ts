// config/init: configurations coffre writes itself. `coffre server` with no configuration creates
// ./coffre-data/ holding a coffre.toml whose rpc_secret and admin token are freshly generated; `coffre node
// init-config` writes one for a node that joins an existing cluster (the cluster's rpc_secret, a bootstrap
// peer, its own admin token). Both files are mode 0600: they hold secrets.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../util/errors.js';

export interface NodeConfigFields {
  header: string[];
  rpcSecretHex: string;
  replicationFactor: number;
  rpcBindAddr: string;
  rpcPublicAddr?: string;
  bootstrapPeers: string[];
  s3BindAddr: string;
  s3Region: string;
  rootDomain?: string;
  adminBindAddr: string;
}

// TOML basic strings: every value written here is checked by its own parser first, but a quote or a backslash
// must still never end the string early.
const tomlString = (s: string) => JSON.stringify(s);

export function nodeConfigText(f: NodeConfigFields): string {
  return [
    ...f.header.map((line) => `# ${line}`),
    '# Paths are relative to this file. See docs/configuration.md for every key.',
    'metadata_dir = "meta"',
    'data_dir = "data"',
    `replication_factor = ${f.replicationFactor}`,
    `rpc_bind_addr = ${tomlString(f.rpcBindAddr)}`,
    ...(f.rpcPublicAddr ? [`rpc_public_addr = ${tomlString(f.rpcPublicAddr)}`] : []),
    `rpc_secret = ${tomlString(f.rpcSecretHex)}`,
    ...(f.bootstrapPeers.length > 0
      ? [`bootstrap_peers = [${f.bootstrapPeers.map(tomlString).join(', ')}]`]
      : []),
    '',
    '[s3_api]',
    `api_bind_addr = ${tomlString(f.s3BindAddr)}`,
    `s3_region = ${tomlString(f.s3Region)}`,
    ...(f.rootDomain ? [`root_domain = ${tomlString(`.${f.rootDomain}`)}`] : []),
    '',
    '[admin]',
    `api_bind_addr = ${tomlString(f.adminBindAddr)}`,
    `admin_token = "${randomBytes(32).toString('base64url')}"`,
    '',
  ].join('\n');
}

export function defaultConfigText(): string {
  return nodeConfigText({
    header: ['coffre node configuration (created by `coffre server` on first start).'],
    rpcSecretHex: randomBytes(32).toString('hex'),
    replicationFactor: 1,
    rpcBindAddr: '127.0.0.1:3901',
    bootstrapPeers: [],
    s3BindAddr: '127.0.0.1:3900',
    s3Region: 'us-east-1',
    rootDomain: 's3.localhost',
    adminBindAddr: '127.0.0.1:3903',
  });
}

// Creates the config file if it does not exist; returns true when it did (a first start).
export function ensureDefaultConfig(configPath: string): boolean {
  if (existsSync(configPath)) return false;
  writeNewConfig(configPath, defaultConfigText());
  return true;
}

/** Writes a configuration that must not replace anything (mode 0600, its directory 0700 when made). */
export function writeNewConfig(configPath: string, text: string): void {
  mkdirSync(dirname(configPath), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(configPath, text, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new UserError(`${configPath} already exists; choose another file or remove it first`);
    throw err;
  }
}
