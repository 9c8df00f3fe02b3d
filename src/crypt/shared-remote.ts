// crypt/shared-remote: a remote several machines use through its stored state (--store-config, remote-meta.ts).
// Before a command a machine syncs: it takes the stored log's newer entries, a key holder's config change, and
// a rotation another machine made — checked against the cipher it holds — re-encrypting under the new cipher
// whatever it stored under the old one that the rotation did not list. After a change it publishes with a
// compare-and-swap: if another machine wrote in between, it syncs again and retries, so no entry is lost.
import { UserError } from '../util/errors.js';
import type { RemoteCipher } from './cipher.js';
import { configPath, parseSize, saveConfig, type RemoteConfig } from './config.js';
import { CryptRemote } from './crypt-remote.js';
import type { SecretKeySource } from './keys.js';
import type { LocationEntry } from './location-log.js';
import { parseKey } from './names.js';
import { openCipher } from './open-remote.js';
import {
  publishedConfig,
  publishedDiffers,
  readState,
  rotatedFrom,
  sealedBy,
  stateEntries,
  writeState,
  type StoredState,
} from './remote-meta.js';

/** Times a publish retries after losing a race before it asks the user to run the command again. */
const PUBLISH_ATTEMPTS = 8;

export interface SharedSession {
  config: RemoteConfig;
  remote: CryptRemote;
  source: SecretKeySource;
  /** The stored state as last read (null: none yet). */
  state: StoredState | null;
  /** True when this machine holds entries the stored log lacks (it should publish even after a read). */
  ahead: boolean;
}

export function crypted(config: RemoteConfig, cipher: RemoteCipher, remote: CryptRemote): CryptRemote {
  return new CryptRemote(
    cipher,
    remote.store,
    remote.log,
    config.chunk ? parseSize(config.chunk) : undefined,
    config.pad === 'padme',
  );
}

function notOurs(s: SharedSession, why: string): UserError {
  return new UserError(
    `${s.remote.store.description}: the stored configuration of ${s.config.name} ${why}. If you trust it, ` +
      `remove ${configPath(s.config.name)} and adopt the remote again with 'coffre crypt init ${s.config.name} --from-remote …'`,
  );
}

/** Entries of ours that `theirs` does not know as recent: the stored log is behind this machine. */
function newerHere(mine: LocationEntry[], theirs: Map<string, LocationEntry>): LocationEntry[] {
  return mine.filter((e) => {
    const t = theirs.get(e.key);
    return !t || t.time < e.time;
  });
}

/** Reads the stored state and brings this machine up to date with it (see the header). */
export async function syncShared(s: SharedSession): Promise<void> {
  const store = s.remote.store;
  const state = await readState(store);
  s.state = state;
  if (!state) {
    s.ahead = s.remote.log.all().length > 0;
    return;
  }
  if (state.config.uuid !== s.config.uuid)
    throw notOurs(s, `belongs to another remote (uuid ${state.config.uuid}, not ${s.config.uuid})`);
  if (state.format === 1) {
    // Written by an older coffre: unauthenticated, so only its log is taken (as that coffre did).
    const entries = await stateEntries(state, s.remote.cipher, store);
    s.remote.log.merge(entries);
    s.ahead = newerHere(s.remote.log.all(), new Map(entries.map((e) => [e.key, e]))).length > 0;
    return;
  }
  if (sealedBy(state, s.remote.cipher)) {
    const entries = await stateEntries(state, s.remote.cipher, store);
    s.remote.log.merge(entries);
    s.ahead = newerHere(s.remote.log.all(), new Map(entries.map((e) => [e.key, e]))).length > 0;
    if (publishedDiffers(state.config, s.config)) {
      // A holder of the cipher changed the config (keys add/remove): take it.
      s.config = { ...s.config, ...state.config };
      saveConfig(s.config);
      s.remote = crypted(s.config, s.remote.cipher, s.remote);
    }
    return;
  }
  await followRotation(s, state);
}

/** Another machine rotated the cipher: check the link, switch to the new cipher, re-encrypt our stragglers. */
async function followRotation(s: SharedSession, state: StoredState): Promise<void> {
  if (!state.rotatedFrom) throw notOurs(s, 'is not sealed with the cipher this machine holds');
  const nextConfig = publishedConfig(state, s.config);
  let next: RemoteCipher;
  try {
    next = await openCipher(nextConfig, s.source);
  } catch (err) {
    throw new UserError(
      `${s.config.name} was rotated on another machine and this machine's keys do not open the new cipher ` +
        `(${(err as Error).message})`,
    );
  }
  const old = s.remote;
  try {
    if (!rotatedFrom(state, old.cipher, next) || !sealedBy(state, next))
      throw notOurs(s, 'names a new cipher that the cipher this machine holds does not vouch for');
    const entries = await stateEntries(state, next, s.remote.store);
    const theirs = new Map(entries.map((e) => [e.key, e]));
    // Everything this machine knows more recently than the rotation was stored (or removed) under the old
    // cipher, after the rotating machine read the log: it is carried over here.
    const stragglers = newerHere(old.log.all(), theirs);
    old.log.merge(entries);
    const fresh = crypted(nextConfig, next, old);
    for (const e of stragglers) {
      if (e.present && !theirs.get(e.key)?.present) {
        const size = parseKey(e.key).size;
        if (size === undefined) throw new UserError(`key ${e.key} has no size; cannot re-encrypt it`);
        const layout = { chunkSize: e.chunkSize, chunkCount: e.chunkCount };
        await fresh.storeStream(e.key, size, old.content(e.key, layout));
        for (const name of old.objectNames(e.key, layout)) await old.store.remove(name);
      } else if (!e.present && theirs.get(e.key)?.present) {
        await fresh.removeKey(e.key);
      }
    }
    saveConfig(nextConfig);
    old.cipher.dispose();
    s.config = nextConfig;
    s.remote = fresh;
    s.ahead = stragglers.length > 0;
  } catch (err) {
    next.dispose();
    throw err;
  }
}

/** Writes this machine's config and log into the remote; on a lost race, syncs and tries again. */
export async function publishShared(s: SharedSession): Promise<void> {
  for (let attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
    // A rotation link stays for machines that have not followed it yet.
    const carried = s.state && sealedBy(s.state, s.remote.cipher) ? s.state.rotatedFrom : undefined;
    const written = await writeState(
      s.remote.store,
      { config: s.config, cipher: s.remote.cipher, entries: s.remote.log.all(), rotatedFrom: carried },
      s.state,
    );
    if (written) {
      s.state = written;
      s.ahead = false;
      return;
    }
    // Another machine wrote first: take what it wrote, but keep a config change this machine is publishing.
    const mine = s.config;
    const cipher = s.remote.cipher;
    await syncShared(s);
    if (s.remote.cipher === cipher && publishedDiffers(mine, s.config)) {
      s.config = mine;
      saveConfig(mine);
      s.remote = crypted(mine, cipher, s.remote);
    }
  }
  throw new UserError(
    `the stored state of ${s.config.name} kept changing while this machine wrote it; run the command again`,
  );
}
