// crypt/rotate: real revocation — a fresh cipher, every object re-encrypted under its new name, then the old
// objects removed. A journal (mode 0600, beside the config) records the new cipher and each key copied, so an
// interrupted rotation resumes; old objects are removed only after the config points at the new cipher, so no
// object is ever without a readable copy.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, errorMessage } from '../util/errors.js';
import { RemoteCipher, generateCipher, type EncryptionFields } from './cipher.js';
import { cryptHome, parseSize, saveConfig, writePrivateFile, type RemoteConfig } from './config.js';
import { CryptRemote } from './crypt-remote.js';
import { loadPublicKeys, type SecretKeySource } from './keys.js';
import { LocationLog, type LocationEntry } from './location-log.js';
import { parseKey } from './names.js';
import { closeRemote, openCipher, openStore, publicKeysOf } from './open-remote.js';
import { readState, rotationLink, sealedBy, writeState } from './remote-meta.js';
import { syncShared, type SharedSession } from './shared-remote.js';

/** Version of the rotation journal format. */
const JOURNAL_VERSION = 1;
/** Times the switch of a shared remote retries after another machine wrote first. */
const SWITCH_ATTEMPTS = 8;

interface Journal {
  version: number;
  phase: 'copy' | 'cleanup';
  previous: EncryptionFields;
  next: EncryptionFields;
  done: string[];
}

function journalPath(name: string): string {
  return join(cryptHome(), `${name}.rotate.json`);
}

function encryptionOf(c: EncryptionFields): EncryptionFields {
  const { encryption, cipher, cipherkeys, pubkeys, mac } = c;
  return { encryption, cipher, cipherkeys, pubkeys, mac };
}

export interface RotateReport {
  copied: number;
  removed: number;
  resumed: boolean;
}

export async function rotate(
  config: RemoteConfig,
  source: SecretKeySource,
  onKey?: (key: string, phase: string) => void,
): Promise<RotateReport> {
  if (config.encryption === 'none')
    throw new UserError(`remote ${config.name} is not encrypted; nothing to rotate`);
  const path = journalPath(config.name);
  const resumed = existsSync(path);
  const chunk = config.chunk ? parseSize(config.chunk) : undefined;
  const log = LocationLog.load(config.name);
  let shared: SharedSession | null = null;
  if (config.storeInRemote && !resumed) {
    // The remote's log lists what other machines stored since this one last synced: rotate that too.
    const cipher = await openCipher(config, source);
    const remote = new CryptRemote(
      cipher,
      await openStore(config, cipher),
      log,
      chunk,
      config.pad === 'padme',
    );
    shared = { config, remote, source, state: null, ahead: false };
    try {
      await syncShared(shared);
    } catch (err) {
      closeRemote(shared.remote);
      throw refusal(config.name, err);
    }
    config = shared.config;
  }
  let journal: Journal;
  let newCipher: RemoteCipher;
  if (resumed) {
    journal = JSON.parse(readFileSync(path, 'utf8')) as Journal;
    if (journal.version !== JOURNAL_VERSION) throw new UserError(`${path}: unsupported journal version`);
    newCipher = await RemoteCipher.open(journal.next, source, await publicKeysOf(config), config.name);
  } else {
    const ids = (config.cipherkeys ?? config.pubkeys ?? '').split(',').filter(Boolean);
    const have = await publicKeysOf(config);
    const keys = have.length > 0 ? have : ids.length > 0 ? await loadPublicKeys(ids) : [];
    journal = {
      version: JOURNAL_VERSION,
      phase: 'copy',
      previous: encryptionOf(config),
      next: await generateCipher(config.encryption, keys, config.mac),
      done: [],
    };
    // This machine must be able to open the new cipher (its key may have been removed): check before starting.
    newCipher = await RemoteCipher.open(journal.next, source, await publicKeysOf(config), config.name);
    writePrivateFile(path, JSON.stringify(journal));
  }
  const save = () => writePrivateFile(path, JSON.stringify(journal));
  const oldCipher = shared?.remote.cipher ?? (await openCipher({ ...config, ...journal.previous }, source));
  const store = shared?.remote.store ?? (await openStore(config, oldCipher));
  const oldRemote = new CryptRemote(oldCipher, store, log, chunk, config.pad === 'padme');
  let copied = 0;
  let removed = 0;

  if (journal.phase === 'copy') {
    const done = new Set(journal.done);
    const staging = LocationLog.load(`${config.name}.rotating`);
    const newRemote = new CryptRemote(newCipher, store, staging, chunk, config.pad === 'padme');
    const copyAll = async () => {
      for (const entry of log.presentKeys()) {
        if (done.has(entry.key)) continue;
        onKey?.(entry.key, 'copy');
        const size = parseKey(entry.key).size;
        if (size === undefined) throw new UserError(`key ${entry.key} has no size; cannot rotate it`);
        await newRemote.storeStream(entry.key, size, oldRemote.content(entry.key));
        journal.done.push(entry.key);
        done.add(entry.key);
        save();
        copied++;
        // Fault injection for the resume test: stop as if the process died here.
        if (Number(process.env.COFFRE_TEST_ROTATE_ABORT_AFTER) === copied)
          throw new UserError('rotation interrupted');
      }
    };
    await copyAll();
    const nextConfig: RemoteConfig = { ...config, ...journal.next };
    // The switch: the log and config name the new cipher first; only then may old objects go.
    const switched = (): LocationEntry[] =>
      log.all().map((e) => {
        const fresh = e.present ? staging.get(e.key) : undefined;
        if (!fresh) return e;
        return {
          key: e.key,
          present: true,
          time: fresh.time,
          chunkSize: fresh.chunkSize,
          chunkCount: fresh.chunkCount,
          ...(e.paths ? { paths: e.paths } : {}),
        };
      });
    if (config.storeInRemote) {
      const session: SharedSession = shared ?? {
        config,
        remote: oldRemote,
        source,
        state: null,
        ahead: false,
      };
      if (!shared) {
        // Resumed: unless this rotation's own switch was written just before it stopped, catch up first.
        session.state = await readState(store);
        if (!(session.state && sealedBy(session.state, newCipher))) await syncOrRefuse(session, config.name);
      }
      await switchShared(session, nextConfig, newCipher, oldCipher, copyAll, switched);
    }
    for (const e of switched()) log.record(e);
    log.compact();
    saveConfig(nextConfig);
    journal.phase = 'cleanup';
    save();
    rmSync(join(cryptHome(), `${config.name}.rotating.log`), { force: true });
  }

  // Cleanup: remove every object named under the old cipher (the names differ, so new objects are untouched).
  for (const key of journal.done) {
    onKey?.(key, 'remove');
    const layouts = [
      { chunkSize: undefined, chunkCount: undefined },
      ...(chunk && parseKey(key).size !== undefined
        ? [{ chunkSize: chunk, chunkCount: Math.max(1, Math.ceil(parseKey(key).size! / chunk)) }]
        : []),
    ];
    for (const layout of layouts) {
      for (const name of oldRemote.objectNames(key, layout)) await store.remove(name);
    }
    removed++;
  }
  rmSync(path, { force: true });
  oldCipher.dispose();
  newCipher.dispose();
  store.close?.();
  return { copied, removed, resumed };
}

function refusal(name: string, err: unknown): Error {
  return new UserError(
    `cannot rotate ${name}: the remote's stored log could not be read, and rotating without it would strand ` +
      `objects other machines stored — ${errorMessage(err)}`,
  );
}

async function syncOrRefuse(session: SharedSession, name: string): Promise<void> {
  const cipher = session.remote.cipher;
  try {
    await syncShared(session);
  } catch (err) {
    throw refusal(name, err);
  }
  if (session.remote.cipher !== cipher)
    throw new UserError(
      `${name} was rotated on another machine while this rotation was interrupted; remove ` +
        `${journalPath(name)} and run 'coffre crypt rotate ${name}' again`,
    );
}

/**
 * Publishes the rotated state with a compare-and-swap: if another machine wrote since the last read, its
 * entries are taken, anything new is copied under the new cipher, and the switch is tried again.
 */
async function switchShared(
  session: SharedSession,
  nextConfig: RemoteConfig,
  newCipher: RemoteCipher,
  oldCipher: RemoteCipher,
  copyAll: () => Promise<void>,
  switched: () => LocationEntry[],
): Promise<void> {
  // A resumed rotation may have switched already, just before it stopped.
  if (session.state && sealedBy(session.state, newCipher)) return;
  const link = rotationLink(oldCipher, newCipher);
  for (let attempt = 0; attempt < SWITCH_ATTEMPTS; attempt++) {
    await copyAll();
    const hook = process.env.COFFRE_TEST_ROTATE_BEFORE_SWITCH;
    if (hook && attempt === 0) execSync(hook, { stdio: 'inherit' }); // a concurrent writer, for the test
    const written = await writeState(
      session.remote.store,
      { config: nextConfig, cipher: newCipher, entries: switched(), rotatedFrom: link },
      session.state,
    );
    if (written) return;
    await syncOrRefuse(session, nextConfig.name);
  }
  throw new UserError(
    `the stored state of ${nextConfig.name} kept changing during the switch; run 'coffre crypt rotate ${nextConfig.name}' again to finish`,
  );
}
