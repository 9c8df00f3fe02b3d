// crypt/cipher: a remote's cipher, generated and stored exactly as git-annex does for each encryption mode, and
// what it yields: the HMAC key for object names and how objects are sealed and opened.
import { randomBytes } from 'node:crypto';
import * as openpgp from 'openpgp';
import { UserError } from '../util/errors.js';
import {
  allKeyIds,
  loadPublicKeys,
  loadSecretKeys,
  longKeyId,
  runGpg,
  type SecretKeySource,
} from './keys.js';
import { DEFAULT_MAC, encryptedName, type MacName } from './names.js';
import {
  WrongKeyError,
  collect,
  decryptMessage,
  encryptToKeys,
  unwrapWithKeys,
  type Opening,
  type Sealing,
  type SessionKey,
} from './openpgp.js';
import { Tag, newFormatHeader } from './packets.js';

export const MODES = ['none', 'shared', 'hybrid', 'pubkey', 'sharedpubkey'] as const;
export type Mode = (typeof MODES)[number];

/** Random bytes behind the cipher (`gpg --gen-random --armor 1 N`): 512, or 256 for pubkey. */
const CIPHER_RANDOM_BYTES = 512;
const PUBKEY_CIPHER_RANDOM_BYTES = 256;
/** Longest cipher text accepted from a cipher blob (git-annex's is 685 bytes). */
const MAX_CIPHER_TEXT = 4096;
/** shared/hybrid split the cipher: the first 256 bytes key the HMAC, the rest (minus newline) is the passphrase. */
const MAC_KEY_BYTES = 256;

/** The encryption fields as they appear in remote.log. */
export interface EncryptionFields {
  encryption: Mode;
  cipher?: string;
  cipherkeys?: string;
  pubkeys?: string;
  mac?: MacName;
}

function freshCipherText(randomLength: number): Buffer {
  return Buffer.from(randomBytes(randomLength).toString('base64') + '\n', 'latin1');
}

function sortedIds(keys: openpgp.PublicKey[]): string {
  return [...new Set(keys.map(longKeyId))].sort().join(',');
}

/** Makes a new cipher for `mode`, encrypted to `keys` where the mode says so. */
export async function generateCipher(
  mode: Mode,
  keys: openpgp.PublicKey[],
  mac?: MacName,
): Promise<EncryptionFields> {
  const base: EncryptionFields = { encryption: mode, ...(mac ? { mac } : {}) };
  if (mode === 'none') return { encryption: 'none' };
  if ((mode === 'hybrid' || mode === 'pubkey' || mode === 'sharedpubkey') && keys.length === 0) {
    throw new UserError(`encryption=${mode} needs at least one --keyid`);
  }
  if (mode === 'shared') return { ...base, cipher: freshCipherText(CIPHER_RANDOM_BYTES).toString('base64') };
  if (mode === 'sharedpubkey') {
    return {
      ...base,
      cipher: freshCipherText(CIPHER_RANDOM_BYTES).toString('base64'),
      pubkeys: sortedIds(keys),
    };
  }
  const text = freshCipherText(mode === 'pubkey' ? PUBKEY_CIPHER_RANDOM_BYTES : CIPHER_RANDOM_BYTES);
  const blob = await encryptToKeys(text, keys);
  text.fill(0);
  return { ...base, cipher: blob.toString('base64'), cipherkeys: sortedIds(keys) };
}

/** Re-encrypts the cipher of a hybrid/pubkey remote to a new key set (git-annex's keyid+= / keyid-=). */
export async function reencryptCipher(
  fields: EncryptionFields,
  cipherText: Buffer,
  keys: openpgp.PublicKey[],
): Promise<EncryptionFields> {
  if (fields.encryption === 'sharedpubkey') return { ...fields, pubkeys: sortedIds(keys) };
  if (fields.encryption !== 'hybrid' && fields.encryption !== 'pubkey') {
    throw new UserError(`encryption=${fields.encryption} has no key list to change`);
  }
  if (keys.length === 0) throw new UserError('at least one key must remain');
  const blob = await encryptToKeys(cipherText, keys);
  return { ...fields, cipher: blob.toString('base64'), cipherkeys: sortedIds(keys) };
}

function idList(s: string | undefined): string[] {
  return s ? s.split(',').filter((x) => x.length > 0) : [];
}

/** The unlocked cipher of a remote: names objects, seals and opens them. */
export class RemoteCipher {
  private secretKeys: openpgp.PrivateKey[] | null = null;

  private constructor(
    readonly fields: EncryptionFields,
    /** The cipher text (newline included); empty for encryption=none. */
    readonly cipherText: Buffer,
    private readonly source: SecretKeySource,
    private readonly publicKeys: openpgp.PublicKey[],
  ) {}

  get mode(): Mode {
    return this.fields.encryption;
  }

  get mac(): MacName {
    return this.fields.mac ?? DEFAULT_MAC;
  }

  /** Unlocks the cipher; hybrid/pubkey need a secret key for one of `cipherkeys`. */
  static async open(
    fields: EncryptionFields,
    source: SecretKeySource,
    publicKeys: openpgp.PublicKey[] = [],
    remoteName = 'remote',
  ): Promise<RemoteCipher> {
    const mode = fields.encryption;
    if (mode === 'none') return new RemoteCipher(fields, Buffer.alloc(0), source, publicKeys);
    if (!fields.cipher) throw new UserError(`remote ${remoteName} has encryption=${mode} but no cipher`);
    const stored = Buffer.from(fields.cipher, 'base64');
    if (mode === 'shared' || mode === 'sharedpubkey')
      return new RemoteCipher(fields, stored, source, publicKeys);
    const ids = idList(fields.cipherkeys);
    const cipher = new RemoteCipher(fields, Buffer.alloc(0), source, publicKeys);
    const text = await cipher.decryptCipherBlob(stored, ids, remoteName);
    return new RemoteCipher(fields, text, source, publicKeys);
  }

  // Why the keys at hand do not open something sealed to `ids`: the files given hold other keys, or none was given.
  private notAmong(keys: openpgp.PrivateKey[], ids: string[]): string {
    const wanted = ids.join(', ') || 'its keys';
    if (this.source.files.length === 0)
      return `no secret key for ${wanted} (give --secret-key FILE or import the key into GnuPG)`;
    const held = keys.map((k) => longKeyId(k)).join(', ') || 'none';
    return (
      `the secret key(s) in ${this.source.files.join(', ')} (${held}) are not among its keys ${wanted}; ` +
      'give the secret key file of one of those (GnuPG is not asked when --secret-key is given)'
    );
  }

  private async keysFor(ids: string[]): Promise<openpgp.PrivateKey[]> {
    if (!this.secretKeys) this.secretKeys = await loadSecretKeys(this.source, ids);
    return this.secretKeys;
  }

  // Read with coffre's own bounded OpenPGP reader, not openpgp.js: the blob may come from the remote itself
  // (--store-config), where anyone holding a public key could have written a decompression bomb.
  private async decryptCipherBlob(blob: Buffer, ids: string[], remoteName: string): Promise<Buffer> {
    const keys = await this.keysFor(ids);
    const useGpg = this.source.useGpg;
    const opening: Opening = {
      unwrapSessionKey: async (pkesks, keyIds) => {
        const usable = keys.filter((k) => allKeyIds(k).some((id) => keyIds.includes(id)));
        if (usable.length > 0) {
          try {
            return await unwrapWithKeys(pkesks, keyIds, usable);
          } catch {
            // fall through to gpg, which may hold another key
          }
        }
        const viaGpg = useGpg ? await gpgSessionKey(pkesks) : null;
        if (viaGpg) return viaGpg;
        throw new UserError(`cannot decrypt the cipher of remote ${remoteName}: ${this.notAmong(keys, ids)}`);
      },
    };
    try {
      return await collect(decryptMessage([blob], opening, { maxLength: MAX_CIPHER_TEXT }));
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw new UserError(`the cipher of remote ${remoteName} is unreadable: ${(err as Error).message}`);
    }
  }

  /** The HMAC key: the first 256 bytes for shared/hybrid, the whole cipher for the public-key modes. */
  private get macKey(): Buffer {
    if (this.mode === 'shared' || this.mode === 'hybrid') return this.cipherText.subarray(0, MAC_KEY_BYTES);
    return this.cipherText;
  }

  /** The object name a remote sees for an annex key. */
  objectName(key: string): string {
    if (this.mode === 'none') return key;
    return encryptedName(this.mac, this.macKey, key);
  }

  private passphrase(): Buffer {
    const end =
      this.cipherText[this.cipherText.length - 1] === 0x0a
        ? this.cipherText.length - 1
        : this.cipherText.length;
    return this.cipherText.subarray(MAC_KEY_BYTES, end);
  }

  private passphraseCache: Buffer | null = null;

  /** How new objects are sealed, or null for encryption=none. */
  async sealing(): Promise<Sealing | null> {
    if (this.mode === 'none') return null;
    if (this.mode === 'shared' || this.mode === 'hybrid') {
      this.passphraseCache ??= Buffer.from(this.passphrase());
      return { kind: 'passphrase', passphrase: this.passphraseCache };
    }
    const ids = idList(this.mode === 'pubkey' ? this.fields.cipherkeys : this.fields.pubkeys);
    const have = this.publicKeys.filter((k) => ids.includes(longKeyId(k)));
    const missing = ids.filter((id) => !have.some((k) => longKeyId(k) === id));
    if (missing.length > 0) have.push(...(await loadPublicKeys(missing)));
    return { kind: 'pubkeys', keys: have };
  }

  /** How objects are opened: the passphrase, or the secret keys for PKESK packets. */
  opening(): Opening {
    if (this.mode === 'shared' || this.mode === 'hybrid') {
      this.passphraseCache ??= Buffer.from(this.passphrase());
      return { passphrase: this.passphraseCache };
    }
    const wanted = idList(this.mode === 'pubkey' ? this.fields.cipherkeys : this.fields.pubkeys);
    return {
      unwrapSessionKey: async (pkesks, keyIds) => {
        const keys = await this.keysFor(wanted);
        const usable = keys.filter((k) => allKeyIds(k).some((id) => keyIds.includes(id)));
        if (usable.length > 0) return unwrapWithKeys(pkesks, keyIds, usable);
        if (this.source.useGpg) {
          const viaGpg = await gpgSessionKey(pkesks);
          if (viaGpg) return viaGpg;
        }
        throw new WrongKeyError(
          `no secret key for this object: it is encrypted to key id(s) ${keyIds.join(', ')}; ` +
            this.notAmong(keys, wanted),
        );
      },
    };
  }

  /** Forget key material held in memory. */
  dispose(): void {
    this.passphraseCache?.fill(0);
    this.cipherText.fill(0);
  }
}

/** Lets gpg (and gpg-agent) unwrap the session key: PKESK packets plus a dummy SEIPD, `--show-session-key`. */
async function gpgSessionKey(pkesks: Buffer): Promise<SessionKey | null> {
  const dummy = Buffer.concat([Buffer.from([1]), randomBytes(64)]);
  const message = Buffer.concat([pkesks, newFormatHeader(Tag.SEIPD, dummy.length), dummy]);
  const r = await runGpg(['--show-session-key', '--decrypt'], message).catch(() => null);
  const m = r?.stderr.match(/session key: '(\d+):([0-9A-Fa-f]+)'/);
  if (!m) return null;
  return { algo: Number(m[1]), key: Buffer.from(m[2], 'hex') };
}
