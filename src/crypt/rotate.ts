// crypt/rotate: real revocation — a fresh cipher, every object re-encrypted under its new name, then the old
// objects removed. A journal (mode 0600, beside the config) records the new cipher and each key copied, so an
// interrupted rotation resumes; old objects are removed only after the config points at the new cipher, so no
// object is ever without a readable copy.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { RemoteCipher, generateCipher, type EncryptionFields } from './cipher.js';
import { cryptHome, parseSize, saveConfig, writePrivateFile, type RemoteConfig } from './config.js';
import { CryptRemote } from './crypt-remote.js';
import { loadPublicKeys, type SecretKeySource } from './keys.js';
import { LocationLog } from './location-log.js';
import { parseKey } from './names.js';
import { openCipher, openStore, publicKeysOf } from './open-remote.js';

/** Version of the rotation journal format. */
const JOURNAL_VERSION = 1;

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
  let journal: Journal;
  const resumed = existsSync(path);
  if (resumed) {
    journal = JSON.parse(readFileSync(path, 'utf8')) as Journal;
    if (journal.version !== JOURNAL_VERSION) throw new UserError(`${path}: unsupported journal version`);
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
    writePrivateFile(path, JSON.stringify(journal));
  }
  const save = () => writePrivateFile(path, JSON.stringify(journal));
  const oldCipher = await openCipher({ ...config, ...journal.previous }, source);
  const newCipher = await RemoteCipher.open(journal.next, source, await publicKeysOf(config), config.name);
  const store = await openStore(config, oldCipher);
  const log = LocationLog.load(config.name);
  const chunk = config.chunk ? parseSize(config.chunk) : undefined;
  const oldRemote = new CryptRemote(oldCipher, store, log, chunk, config.pad === 'padme');
  const keys = log.presentKeys();
  let copied = 0;
  let removed = 0;

  if (journal.phase === 'copy') {
    const done = new Set(journal.done);
    const staging = LocationLog.load(`${config.name}.rotating`);
    const newRemote = new CryptRemote(newCipher, store, staging, chunk, config.pad === 'padme');
    for (const entry of keys) {
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
    // Switch: the log and config name the new cipher first; only then may old objects go.
    for (const entry of keys) {
      const fresh = staging.get(entry.key);
      if (fresh)
        log.record({
          key: entry.key,
          present: true,
          chunkSize: fresh.chunkSize,
          chunkCount: fresh.chunkCount,
        });
    }
    log.compact();
    saveConfig({ ...config, ...journal.next });
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
  return { copied, removed, resumed };
}
