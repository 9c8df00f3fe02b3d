// crypt/open-remote: from a remote's saved config to a working CryptRemote (cipher unlocked, store connected).
import * as openpgp from 'openpgp';
import { UserError } from '../util/errors.js';
import { RemoteCipher } from './cipher.js';
import { parseSize, type RemoteConfig } from './config.js';
import { decodeCreds, envCreds } from './creds.js';
import { CryptRemote } from './crypt-remote.js';
import type { SecretKeySource } from './keys.js';
import { LocationLog } from './location-log.js';
import { DirectoryStore } from './remote-directory.js';
import type { ObjectStore } from './store.js';

export async function publicKeysOf(config: RemoteConfig): Promise<openpgp.PublicKey[]> {
  if (!config.publicKeys) return [];
  return (await openpgp.readKeys({ armoredKeys: config.publicKeys })).map((k) => k.toPublic());
}

export async function openCipher(config: RemoteConfig, source: SecretKeySource): Promise<RemoteCipher> {
  return RemoteCipher.open(config, source, await publicKeysOf(config), config.name);
}

export async function openStore(config: RemoteConfig, cipher: RemoteCipher | null): Promise<ObjectStore> {
  if (config.type === 'directory') {
    if (!config.directory) throw new UserError(`remote ${config.name} has no directory`);
    return new DirectoryStore(config.directory);
  }
  if (!config.s3) throw new UserError(`remote ${config.name} has no S3 location`);
  const creds = envCreds() ?? (config.s3creds ? await decodeCreds(config.s3creds, cipher) : null);
  // Loaded on demand: the AWS SDK costs a noticeable part of start-up for directory remotes.
  const { S3Store } = await import('./remote-s3.js');
  return new S3Store(config.s3, creds);
}

export async function openRemote(config: RemoteConfig, source: SecretKeySource): Promise<CryptRemote> {
  const cipher = await openCipher(config, source);
  const store = await openStore(config, cipher);
  return new CryptRemote(
    cipher,
    store,
    LocationLog.load(config.name),
    config.chunk ? parseSize(config.chunk) : undefined,
    config.pad === 'padme',
  );
}

export function closeRemote(remote: CryptRemote): void {
  remote.cipher.dispose();
  remote.store.close?.();
}
