// crypt/remote-meta: the remote's configuration and location log stored inside the remote itself, so a second
// machine holding one of the private keys can adopt the remote from nothing but its location, and machines that
// share it see each other's changes.
//
// Format 2 (written now) is one object, `coffre-remote.json`, so that a change — a rotation above all — switches
// configuration and log together, with one compare-and-swap:
//   config       what git-annex keeps in remote.log: mode, the cipher *encrypted to the keys*, key ids, MAC,
//                chunking, padding, embedded creds (encrypted). Never the cipher in the clear, so only hybrid
//                and pubkey remotes may publish it.
//   log          the location log (JSON lines), sealed with the remote's cipher like any object, base64.
//   seal         HMAC-SHA256 under a key derived from the cipher over config and log: written by a holder of
//                the cipher (in pubkey mode anyone with a public key could write a log that decrypts).
//   rotatedFrom  after a rotation: HMAC under the previous cipher's key of the new cipher text, so a machine
//                still holding the previous cipher follows the rotation and trusts no one else's.
// Format 1 (older coffre) kept the config alone in `coffre-remote.json`, unauthenticated, and the log in
// `coffre-log.pgp`. It is still read; the first format-2 write replaces `coffre-log.pgp` with a note, so an
// older coffre fails on its next pull instead of writing a log no one reads.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { MODES, type RemoteCipher } from './cipher.js';
import { CONFIG_VERSION, type RemoteConfig } from './config.js';
import type { LocationEntry } from './location-log.js';
import { isMacName } from './names.js';
import { collect, decryptMessage, encryptMessage } from './openpgp.js';
import { MissingObjectError, ObjectTooLargeError, type ObjectStore } from './store.js';

/** Fixed object names; versioned contents. */
export const META_CONFIG_OBJECT = 'coffre-remote.json';
export const META_LOG_OBJECT = 'coffre-log.pgp';
const META_V1 = 1;
const META_VERSION = 2;
/** Largest location log read back from a remote (about 400 000 keys). */
const MAX_LOG_BYTES = 64 * 1024 * 1024;
/** Largest state object: the sealed log in base64, plus the config. */
const MAX_STATE_BYTES = Math.ceil((MAX_LOG_BYTES * 4) / 3) + 4 * 1024 * 1024;
/** Bounds on the paths an entry of a stored log may carry. */
const MAX_PATHS_PER_KEY = 1024;
const MAX_PATH_LENGTH = 4096;
const SEAL_CONTEXT = 'coffre remote state 2\n';
const ROTATION_CONTEXT = 'coffre rotation 2\n';
const MOVED_NOTE = 'coffre: this log moved into coffre-remote.json (format 2); upgrade coffre\n';

/** Fields of the config that travel with the remote (no local paths, endpoints or plaintext secrets). */
const PUBLISHED = [
  'uuid',
  'encryption',
  'cipher',
  'cipherkeys',
  'pubkeys',
  'mac',
  'chunk',
  'pad',
  'publicKeys',
  's3creds',
  'embedcreds',
  'extra',
] as const;
type Published = Partial<Pick<RemoteConfig, (typeof PUBLISHED)[number]>>;

/** What a remote holds about itself, decoded and checked field by field. */
export interface StoredState {
  format: 1 | 2;
  /** The store's version of coffre-remote.json, for compare-and-swap. */
  version: string;
  config: Published;
  /** Format 2: the sealed location log, its seal and rotation link. */
  log?: Buffer;
  seal?: Buffer;
  rotatedFrom?: Buffer;
}

export function canPublish(config: RemoteConfig): boolean {
  return config.encryption === 'hybrid' || config.encryption === 'pubkey';
}

function published(config: RemoteConfig | Published): Published {
  const out: Record<string, unknown> = {};
  for (const k of PUBLISHED) if (config[k] !== undefined) out[k] = config[k];
  return out as Published;
}

/** True when the published fields of `a` and `b` differ. */
export function publishedDiffers(a: RemoteConfig | Published, b: RemoteConfig | Published): boolean {
  return PUBLISHED.some((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

function bad(store: ObjectStore, why: string): UserError {
  return new UserError(`${store.description}: ${META_CONFIG_OBJECT} is malformed (${why})`);
}

function decodeConfig(store: ObjectStore, raw: unknown): Published {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad(store, 'config is not an object');
  const c = raw as Record<string, unknown>;
  const str = (k: string) => {
    if (c[k] !== undefined && typeof c[k] !== 'string') throw bad(store, `${k} is not a string`);
  };
  for (const k of ['uuid', 'cipher', 'cipherkeys', 'pubkeys', 'chunk', 'publicKeys', 's3creds']) str(k);
  if (typeof c.uuid !== 'string' || !c.uuid) throw bad(store, 'no uuid');
  if (!MODES.includes(c.encryption as (typeof MODES)[number])) throw bad(store, 'unknown encryption');
  if (c.mac !== undefined && !(typeof c.mac === 'string' && isMacName(c.mac)))
    throw bad(store, 'unknown mac');
  if (c.pad !== undefined && c.pad !== 'padme') throw bad(store, 'unknown padding');
  if (c.embedcreds !== undefined && typeof c.embedcreds !== 'boolean') throw bad(store, 'embedcreds');
  if (c.extra !== undefined) {
    if (typeof c.extra !== 'object' || c.extra === null || Array.isArray(c.extra)) throw bad(store, 'extra');
    for (const v of Object.values(c.extra)) if (typeof v !== 'string') throw bad(store, 'extra');
  }
  return published(c as unknown as Published);
}

function hex(store: ObjectStore, v: unknown, what: string): Buffer | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) throw bad(store, `${what} is not 64 hex digits`);
  return Buffer.from(v, 'hex');
}

/** Reads the remote's stored state; null when the remote holds none (not initialized with --store-config). */
export async function readState(store: ObjectStore): Promise<StoredState | null> {
  let got;
  try {
    got = await store.getVersioned(META_CONFIG_OBJECT, MAX_STATE_BYTES);
  } catch (err) {
    if (err instanceof ObjectTooLargeError) throw new UserError(err.message);
    throw err;
  }
  if (!got) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(got.data.toString('utf8'));
  } catch {
    throw bad(store, 'not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw bad(store, 'not an object');
  const p = parsed as Record<string, unknown>;
  if (p.version === META_V1) return { format: 1, version: got.version, config: decodeConfig(store, p) };
  if (p.version !== META_VERSION)
    throw new UserError(
      `${store.description}: unsupported stored configuration version ${String(p.version)} (upgrade coffre)`,
    );
  if (typeof p.log !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(p.log)) throw bad(store, 'log');
  const seal = hex(store, p.seal, 'seal');
  if (!seal) throw bad(store, 'no seal');
  return {
    format: 2,
    version: got.version,
    config: decodeConfig(store, p.config),
    log: Buffer.from(p.log, 'base64'),
    seal,
    rotatedFrom: hex(store, p.rotatedFrom, 'rotatedFrom'),
  };
}

/** The key that seals a remote's state: derived from the cipher text, apart from names and objects. */
function stateKey(cipher: RemoteCipher): Buffer {
  return createHmac('sha256', cipher.cipherText).update('coffre remote state key').digest();
}

function sealOf(cipher: RemoteCipher, config: Published, log: Buffer): Buffer {
  const fields = PUBLISHED.filter((k) => config[k] !== undefined).map((k) => [k, config[k]]);
  return createHmac('sha256', stateKey(cipher))
    .update(SEAL_CONTEXT)
    .update(JSON.stringify(fields) + '\n')
    .update(createHash('sha256').update(log).digest())
    .digest();
}

/** The link a rotation leaves: the previous cipher vouches for the next cipher text. */
export function rotationLink(previous: RemoteCipher, next: RemoteCipher): Buffer {
  return createHmac('sha256', stateKey(previous)).update(ROTATION_CONTEXT).update(next.cipherText).digest();
}

const same = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

/** True when the state was written by a holder of `cipher` (format 2). */
export function sealedBy(state: StoredState, cipher: RemoteCipher): boolean {
  return state.format === 2 && same(state.seal!, sealOf(cipher, state.config, state.log!));
}

/** True when the state records a rotation from `previous` to `next`. */
export function rotatedFrom(state: StoredState, previous: RemoteCipher, next: RemoteCipher): boolean {
  return state.rotatedFrom !== undefined && same(state.rotatedFrom, rotationLink(previous, next));
}

function parseEntries(text: string): LocationEntry[] {
  const entries: LocationEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let e: Partial<LocationEntry>;
    try {
      e = JSON.parse(line) as Partial<LocationEntry>;
    } catch {
      throw new UserError(`the remote's location log has a malformed line`);
    }
    const count = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) > 0);
    if (
      typeof e.key !== 'string' ||
      typeof e.present !== 'boolean' ||
      typeof e.time !== 'number' ||
      !Number.isFinite(e.time) ||
      !count(e.chunkSize) ||
      !count(e.chunkCount) ||
      !(
        e.paths === undefined ||
        (Array.isArray(e.paths) &&
          e.paths.length <= MAX_PATHS_PER_KEY &&
          e.paths.every((p) => typeof p === 'string' && p.length > 0 && p.length <= MAX_PATH_LENGTH))
      )
    )
      throw new UserError(`the remote's location log has a malformed entry`);
    entries.push(e as LocationEntry);
  }
  return entries;
}

async function openSealedLog(sealed: Buffer, cipher: RemoteCipher): Promise<LocationEntry[]> {
  const plain = await collect(decryptMessage([sealed], cipher.opening(), { maxLength: MAX_LOG_BYTES }));
  return parseEntries(plain.toString('utf8'));
}

/** The location log the state holds, opened with `cipher` (the caller checked the seal); format 1 reads it. */
export async function stateEntries(
  state: StoredState,
  cipher: RemoteCipher,
  store: ObjectStore,
): Promise<LocationEntry[]> {
  if (state.format === 2) return openSealedLog(state.log!, cipher);
  let sealed;
  try {
    sealed = await store.getVersioned(META_LOG_OBJECT, MAX_LOG_BYTES + 1024 * 1024);
  } catch (err) {
    if (err instanceof ObjectTooLargeError) throw new UserError(err.message);
    if (err instanceof MissingObjectError) return [];
    throw err;
  }
  return sealed ? openSealedLog(sealed.data, cipher) : [];
}

export interface StateToWrite {
  config: RemoteConfig;
  cipher: RemoteCipher;
  entries: LocationEntry[];
  /** The rotation link to carry (the state's own, or a fresh one from rotate). */
  rotatedFrom?: Buffer;
}

/**
 * Writes config and sealed log as one object if the remote still holds version `expected` (null: nothing);
 * returns the new version, or null when another machine wrote first (re-read, merge and try again).
 */
export async function writeState(
  store: ObjectStore,
  s: StateToWrite,
  expected: StoredState | null,
): Promise<StoredState | null> {
  if (!canPublish(s.config))
    throw new UserError(
      `encryption=${s.config.encryption} would expose the cipher; only hybrid and pubkey remotes can store their config`,
    );
  const sealing = await s.cipher.sealing();
  const text = Buffer.from(
    [...s.entries]
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((e) => JSON.stringify(e))
      .join('\n') + '\n',
  );
  if (text.length > MAX_LOG_BYTES)
    throw new UserError(`the location log is larger than ${MAX_LOG_BYTES} bytes; it cannot be stored`);
  const log = await collect(encryptMessage([text], text.length, sealing!));
  const config = published(s.config);
  const seal = sealOf(s.cipher, config, log);
  const body: Record<string, unknown> = {
    version: META_VERSION,
    config,
    log: log.toString('base64'),
    seal: seal.toString('hex'),
    ...(s.rotatedFrom ? { rotatedFrom: s.rotatedFrom.toString('hex') } : {}),
  };
  const version = await store.putIfUnchanged(
    META_CONFIG_OBJECT,
    Buffer.from(JSON.stringify(body) + '\n'),
    expected?.version ?? null,
  );
  if (version !== null && expected?.format === 1) {
    const note = Buffer.from(MOVED_NOTE);
    await store.put(
      META_LOG_OBJECT,
      (async function* () {
        yield note;
      })(),
      note.length,
    );
  }
  if (version === null) return null;
  return { format: 2, version, config, log, seal, rotatedFrom: s.rotatedFrom };
}

/** The config a remote published, completed with where it lives (from the caller). */
export function publishedConfig(
  state: StoredState,
  base: Pick<RemoteConfig, 'name' | 'type' | 'directory' | 's3'>,
): RemoteConfig {
  return { version: CONFIG_VERSION, ...base, storeInRemote: true, ...state.config } as RemoteConfig;
}
