// crypt/remote-meta: the remote's configuration and location log stored inside the remote itself, so a second
// machine holding one of the private keys can adopt the remote from nothing but its location.
//   coffre-remote.json — what git-annex keeps in remote.log: mode, the cipher *encrypted to the keys*, key ids,
//                        MAC, chunking, padding, embedded creds (encrypted). Never the cipher in the clear, so
//                        only hybrid and pubkey remotes may publish it.
//   coffre-log.pgp     — the location log (JSON lines), sealed with the remote's cipher like any object.
// Both are rewritten after each change; logs from several machines merge by newest entry per key.
import { UserError } from '../util/errors.js';
import type { RemoteCipher } from './cipher.js';
import { CONFIG_VERSION, type RemoteConfig } from './config.js';
import type { LocationEntry, LocationLog } from './location-log.js';
import { collect, decryptMessage, encryptMessage } from './openpgp.js';
import { MissingObjectError, type ObjectStore } from './store.js';

/** Fixed object names; versioned contents. */
export const META_CONFIG_OBJECT = 'coffre-remote.json';
export const META_LOG_OBJECT = 'coffre-log.pgp';
const META_VERSION = 1;
/** Largest location log read back from a remote (about 1.5 million keys). */
const MAX_LOG_BYTES = 256 * 1024 * 1024;

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

export function canPublish(config: RemoteConfig): boolean {
  return config.encryption === 'hybrid' || config.encryption === 'pubkey';
}

async function readAll(store: ObjectStore, name: string): Promise<Buffer | null> {
  try {
    const parts: Buffer[] = [];
    for await (const p of store.get(name)) parts.push(p);
    return Buffer.concat(parts);
  } catch (err) {
    if (err instanceof MissingObjectError) return null;
    throw err;
  }
}

async function putAll(store: ObjectStore, name: string, data: Buffer): Promise<void> {
  // Replaced atomically by the store (rename / PUT), never absent in between.
  await store.put(
    name,
    (async function* () {
      yield data;
    })(),
    data.length,
  );
}

/** Writes the published config and the sealed location log into the remote. */
export async function publishMeta(
  config: RemoteConfig,
  cipher: RemoteCipher,
  store: ObjectStore,
  log: LocationLog,
): Promise<void> {
  if (!canPublish(config))
    throw new UserError(
      `encryption=${config.encryption} would expose the cipher; only hybrid and pubkey remotes can store their config`,
    );
  const published: Record<string, unknown> = { version: META_VERSION };
  for (const k of PUBLISHED) if (config[k] !== undefined) published[k] = config[k];
  await putAll(store, META_CONFIG_OBJECT, Buffer.from(JSON.stringify(published) + '\n'));
  const sealing = await cipher.sealing();
  const text = Buffer.from(
    log
      .all()
      .map((e) => JSON.stringify(e))
      .join('\n') + '\n',
  );
  await putAll(store, META_LOG_OBJECT, await collect(encryptMessage([text], text.length, sealing!)));
}

/** Merges the remote's published location log into the local one; returns the number of entries taken. */
export async function pullLog(cipher: RemoteCipher, store: ObjectStore, log: LocationLog): Promise<number> {
  const sealed = await readAll(store, META_LOG_OBJECT);
  if (!sealed) return 0;
  const text = (
    await collect(decryptMessage([sealed], cipher.opening(), { maxLength: MAX_LOG_BYTES }))
  ).toString('utf8');
  const entries = text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LocationEntry);
  return log.merge(entries);
}

/** The config a remote published, completed with where it lives (from the caller). */
export async function readPublishedConfig(
  store: ObjectStore,
  base: Pick<RemoteConfig, 'name' | 'type' | 'directory' | 's3'>,
): Promise<RemoteConfig> {
  const raw = await readAll(store, META_CONFIG_OBJECT);
  if (!raw)
    throw new UserError(
      `${store.description} holds no coffre configuration (was it initialized with --store-config?)`,
    );
  const parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  if (parsed.version !== META_VERSION)
    throw new UserError(`unsupported stored configuration version ${String(parsed.version)}`);
  const config: Record<string, unknown> = { version: CONFIG_VERSION, ...base, storeInRemote: true };
  for (const k of PUBLISHED) if (parsed[k] !== undefined) config[k] = parsed[k];
  return config as unknown as RemoteConfig;
}
