// crypt/config: one JSON file per remote in the user's coffre config directory (mode 0600), holding what
// git-annex keeps in remote.log plus where the remote lives. $COFFRE_CRYPT_HOME overrides the directory.
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import type { EncryptionFields } from './cipher.js';

/** Version of the per-remote config file; bump with a migration when the shape changes. */
export const CONFIG_VERSION = 1;

export interface S3Location {
  endpoint?: string;
  bucket: string;
  prefix: string;
  region: string;
  pathStyle: boolean;
  partSize?: number;
}

export interface RemoteConfig extends EncryptionFields {
  version: number;
  name: string;
  uuid: string;
  type: 'directory' | 's3';
  directory?: string;
  s3?: S3Location;
  /** Chunk size as typed (git-annex keeps the text, e.g. `1MiB`). */
  chunk?: string;
  /** Armored public keys for the public-key modes, so writing needs no keyring. */
  publicKeys?: string;
  /** Embedded S3 credentials exactly as git-annex's `s3creds=` field. */
  s3creds?: string;
  embedcreds?: boolean;
  /** Size padding for new objects (coffre only; git-annex reads padded objects but writes unpadded ones). */
  pad?: 'padme';
  /** Keep the config and the location log inside the remote too (remote-meta.ts). */
  storeInRemote?: boolean;
  /** remote.log fields coffre does not interpret, kept for export. */
  extra?: Record<string, string>;
}

export function cryptHome(): string {
  if (process.env.COFFRE_CRYPT_HOME) return process.env.COFFRE_CRYPT_HOME;
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'coffre', 'crypt');
}

export function ensureHome(): string {
  const dir = cryptHome();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkRemoteName(name: string): void {
  if (!NAME_RE.test(name))
    throw new UserError(`bad remote name '${name}' (letters, digits, . _ -; at most 64)`);
}

export function configPath(name: string): string {
  checkRemoteName(name);
  return join(cryptHome(), `${name}.json`);
}

export function remoteExists(name: string): boolean {
  return existsSync(configPath(name));
}

export function loadConfig(name: string): RemoteConfig {
  const path = configPath(name);
  if (!existsSync(path))
    throw new UserError(`no crypt remote named ${name} (see 'coffre crypt ls-remotes' or 'init')`);
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as RemoteConfig;
  if (parsed.version !== CONFIG_VERSION)
    throw new UserError(`${path}: unsupported config version ${parsed.version}`);
  return parsed;
}

/** Writes atomically (tmp → rename) with mode 0600. */
export function saveConfig(config: RemoteConfig): void {
  ensureHome();
  writePrivateFile(configPath(config.name), JSON.stringify(config, null, 2) + '\n');
}

export function writePrivateFile(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function listRemotes(): string[] {
  const dir = cryptHome();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** Parses a size as git-annex does: `1MiB`, `500kB`, `2 GB`, `1048576` (bytes). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) throw new UserError(`bad size '${text}' (e.g. 1MiB, 500kB)`);
  const units: Record<string, number> = {
    '': 1,
    b: 1,
    byte: 1,
    bytes: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    tb: 1e12,
    kib: 1024,
    mib: 1024 ** 2,
    gib: 1024 ** 3,
    tib: 1024 ** 4,
    k: 1e3,
    m: 1e6,
    g: 1e9,
  };
  const mult = units[m[2].toLowerCase()];
  if (mult === undefined) throw new UserError(`bad size unit in '${text}'`);
  const n = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UserError(`bad size '${text}'`);
  return n;
}
