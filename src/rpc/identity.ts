// rpc/identity: who a node is and which cluster it belongs to.
// - The node key: a long-term Ed25519 key pair kept in `<dir>/node_key` (64 bytes, libsodium layout
//   seed ‖ public key, mode 0600) with the public half in `node_key.pub`. Its public key, as 64 hex digits, is
//   the node id that peers write as `<id>@host:port`.
// - The cluster's rpc_secret: 32 bytes written as 64 hex digits, the network key of the Secret Handshake.
//   A node without it cannot talk to the cluster at all.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { requirePrivateFile } from '../util/private-file.js';
import type { KeyPair } from '../net/handshake.js';
import { SIGN_PUBLIC_KEY_BYTES, SIGN_SECRET_KEY_BYTES, sodium } from '../net/sodium.js';

export const NODE_KEY_FILE = 'node_key';
export const NODE_PUBLIC_KEY_FILE = 'node_key.pub';
export const RPC_SECRET_ENV = 'COFFRE_RPC_SECRET';
const HOW_TO_MAKE_SECRET = 'generate one with `openssl rand -hex 32`';

/** A node's long-term identity. `id` is the hex public key. */
export interface NodeIdentity extends KeyPair {
  id: string;
}

export interface KeyFileOptions {
  /** Accept key or secret files that group/others can read (not recommended). */
  allowInsecurePermissions?: boolean;
}

/** The node id (64 hex digits) of a public key. */
export function nodeIdOf(publicKey: Buffer): string {
  return publicKey.toString('hex');
}

/** Parses a node id (64 hex digits, any case) into a public key; throws UserError otherwise. */
export function parseNodeId(id: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(id)) {
    throw new UserError(`invalid node id "${id}": expected 64 hexadecimal digits (the node's public key)`);
  }
  return Buffer.from(id, 'hex');
}

export function checkPrivate(path: string, what: string, opts: KeyFileOptions): void {
  if (opts.allowInsecurePermissions) return;
  requirePrivateFile(`${what} ${path}`, path, { howToAllow: 'allow it explicitly' });
}

function identityFromSecretKey(secretKey: Buffer, path: string): NodeIdentity {
  if (secretKey.length !== SIGN_SECRET_KEY_BYTES) {
    throw new UserError(
      `node key ${path} is damaged: expected ${SIGN_SECRET_KEY_BYTES} bytes, found ${secretKey.length}`,
    );
  }
  // Re-derive from the seed: a file whose public half does not match its seed is damaged.
  const publicKey = Buffer.alloc(SIGN_PUBLIC_KEY_BYTES);
  const check = Buffer.alloc(SIGN_SECRET_KEY_BYTES);
  sodium.crypto_sign_seed_keypair(publicKey, check, secretKey.subarray(0, 32));
  const ok = check.equals(secretKey);
  check.fill(0);
  if (!ok) throw new UserError(`node key ${path} is damaged: its public key does not match its seed`);
  return { publicKey, secretKey, id: nodeIdOf(publicKey) };
}

/** Loads `<dir>/node_key`, or creates it (and `node_key.pub`) on first start. */
export function loadOrCreateNodeKey(dir: string, opts: KeyFileOptions = {}): NodeIdentity {
  const path = join(dir, NODE_KEY_FILE);
  if (existsSync(path)) {
    checkPrivate(path, 'node key', opts);
    return identityFromSecretKey(readFileSync(path), path);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const publicKey = Buffer.alloc(SIGN_PUBLIC_KEY_BYTES);
  const secretKey = Buffer.alloc(SIGN_SECRET_KEY_BYTES);
  sodium.crypto_sign_keypair(publicKey, secretKey);
  // Written aside then renamed, so a crash never leaves a half-written key that a restart would refuse.
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, secretKey, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600); // in case the umask was stricter than needed or the fs ignored the mode
  renameSync(tmp, path);
  writeFileSync(join(dir, NODE_PUBLIC_KEY_FILE), publicKey, { mode: 0o644 });
  return { publicKey, secretKey, id: nodeIdOf(publicKey) };
}

/** Where an rpc_secret may come from; at most one of `value` and `file` (the environment wins over both). */
export interface RpcSecretSources {
  /** `rpc_secret` from the configuration. */
  value?: string;
  /** `rpc_secret_file` from the configuration. */
  file?: string;
  /** Environment to read COFFRE_RPC_SECRET from (default process.env). */
  env?: NodeJS.ProcessEnv;
  allowInsecurePermissions?: boolean;
}

function decodeSecret(text: string, origin: string): Buffer {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new UserError(
      `${origin} must be 64 hexadecimal digits (32 bytes), found ${hex.length} characters; ${HOW_TO_MAKE_SECRET}`,
    );
  }
  const secret = Buffer.from(hex, 'hex');
  if (secret.every((b) => b === 0)) throw new UserError(`${origin} is all zeros; ${HOW_TO_MAKE_SECRET}`);
  return secret;
}

/**
 * The cluster's network key from COFFRE_RPC_SECRET, rpc_secret or rpc_secret_file (refused if readable by
 * group/others unless allowed). Error messages never include the secret.
 */
export function parseRpcSecret(sources: RpcSecretSources): Buffer {
  const env = sources.env ?? process.env;
  const fromEnv = env[RPC_SECRET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return decodeSecret(fromEnv, RPC_SECRET_ENV);
  if (sources.value !== undefined && sources.file !== undefined) {
    throw new UserError('set either rpc_secret or rpc_secret_file, not both');
  }
  if (sources.value !== undefined) return decodeSecret(sources.value, 'rpc_secret');
  if (sources.file !== undefined) {
    if (!existsSync(sources.file)) {
      throw new UserError(`rpc_secret_file ${sources.file} does not exist; ${HOW_TO_MAKE_SECRET} into it`);
    }
    checkPrivate(sources.file, 'rpc_secret_file', sources);
    return decodeSecret(readFileSync(sources.file, 'utf8'), `rpc_secret_file ${sources.file}`);
  }
  throw new UserError(
    `no rpc_secret: set rpc_secret or rpc_secret_file in the configuration, or ${RPC_SECRET_ENV}; ${HOW_TO_MAKE_SECRET}`,
  );
}

/** A peer written as `<node id>@<host>:<port>` (IPv6 hosts in brackets). */
export interface PeerAddress {
  id: string;
  publicKey: Buffer;
  host: string;
  port: number;
}

/** Parses `host:port` or `[v6]:port`. Port 0 ("any free port") only with `allowAnyPort`, for listening. */
export function parseHostPort(
  addr: string,
  opts: { allowAnyPort?: boolean } = {},
): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < (opts.allowAnyPort ? 0 : 1) || port > 65535) {
    throw new UserError(`invalid address "${addr}": expected host:port (IPv6 as [addr]:port)`);
  }
  return { host: m[1] ?? m[2], port };
}

/** Parses `<id>@host:port`. */
export function parsePeerAddress(text: string): PeerAddress {
  const at = text.indexOf('@');
  if (at < 0) throw new UserError(`invalid peer "${text}": expected <node id>@<host>:<port>`);
  const publicKey = parseNodeId(text.slice(0, at));
  return { id: nodeIdOf(publicKey), publicKey, ...parseHostPort(text.slice(at + 1)) };
}
