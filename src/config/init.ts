// config/init: the embedded default. `coffre server` with no configuration creates ./coffre-data/ holding a
// coffre.toml whose rpc_secret and admin token are freshly generated (the file is mode 0600: it holds them).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function defaultConfigText(): string {
  return [
    '# coffre node configuration (created by `coffre server` on first start).',
    '# Paths are relative to this file. See docs/configuration.md for every key.',
    'metadata_dir = "meta"',
    'data_dir = "data"',
    'replication_factor = 1',
    'rpc_bind_addr = "127.0.0.1:3901"',
    `rpc_secret = "${randomBytes(32).toString('hex')}"`,
    '',
    '[s3_api]',
    'api_bind_addr = "127.0.0.1:3900"',
    's3_region = "us-east-1"',
    'root_domain = ".s3.localhost"',
    '',
    '[admin]',
    'api_bind_addr = "127.0.0.1:3903"',
    `admin_token = "${randomBytes(32).toString('base64url')}"`,
    '',
  ].join('\n');
}

// Creates the config file if it does not exist; returns true when it did (a first start).
export function ensureDefaultConfig(configPath: string): boolean {
  if (existsSync(configPath)) return false;
  mkdirSync(dirname(configPath), { recursive: true, mode: 0o700 });
  writeFileSync(configPath, defaultConfigText(), { mode: 0o600, flag: 'wx' });
  return true;
}
