// The SSE-S3 keyring: random 32-byte master keys that exist on disk only encrypted (OpenPGP) to one or more
// operators' public keys — git-annex's hybrid scheme — and are unlocked in memory when a node starts. An
// object stored with SSE-S3 derives its data and metadata keys from the master key named in its stored record
// exactly as SSE-C derives them from a customer key (docs/formats-sse.md, section 1).
//
// Rotation adds a new master key that new objects use; older ones stay for reading. Resealing re-encrypts every
// master key to a new set of operators (adding or removing one) without touching objects.
//
// What it protects: a stolen disk or backup without an operator's private key. What it does not: the file is not
// signed, so someone able to write the node's data directory could substitute a keyring whose master key they
// know, which affects objects written afterwards; and a running node holds the master keys in memory.
//
// The node's side (a keyring file, unlocked at start or by an operator) is sse/sse-s3-keys.ts.

import * as openpgp from 'openpgp';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { KEY_SIZE, lengthPrefixed, zeroize } from '../crypto/keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { S3Errors } from '../util/s3-error.js';
import type { StoredEncryption } from './object-crypto.js';
import type { EncryptionParams } from './params.js';

// ---- Format constants. DO NOT CHANGE: keyring files depend on them. ----
export const KEYRING_FORMAT = 'coffre-sse-s3-keyring';
export const KEYRING_VERSION = 1;
/** Sealed payload: this label ‖ 0x00 ‖ lp(keyId) ‖ masterKey(32), so a sealed key cannot pose as another id. */
export const MASTER_KEY_LABEL = 'coffre/sse-s3-master-key/v1';
/** Key check value: HMAC-SHA256(masterKey, this label ‖ 0x00 ‖ lp(keyId)), hex. Optional in the file. */
export const KEY_CHECK_LABEL = 'coffre/sse-s3-key-check/v1';
// ---- end of format constants ----

/** One master key as stored: its id, when it was made, whom it is sealed to, and the OpenPGP message. */
export interface SealedMasterKey {
  id: string;
  created: string;
  /** Fingerprints of the operator keys the message is encrypted to (informational; the message decides). */
  recipients: string[];
  /** ASCII-armored OpenPGP message holding the sealed payload. */
  sealed: string;
  /**
   * Key check value (KEY_CHECK_LABEL): lets a node handed master keys by an operator (`coffre sse-s3 unlock`)
   * tell that they are this keyring's, without being able to open it. Absent in entries made before it was
   * kept; such keys are taken as given.
   */
  check?: string;
}

/** The keyring file (JSON). */
export interface KeyringFile {
  format: typeof KEYRING_FORMAT;
  v: typeof KEYRING_VERSION;
  /** Id of the master key new objects are written with. */
  current: string;
  keys: SealedMasterKey[];
}

function payload(id: string, key: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(MASTER_KEY_LABEL + '\0', 'ascii'),
    lengthPrefixed(Buffer.from(id, 'utf8')),
    key,
  ]);
}

function unpack(id: string, bytes: Uint8Array): Buffer {
  const expectedPrefix = Buffer.concat([
    Buffer.from(MASTER_KEY_LABEL + '\0', 'ascii'),
    lengthPrefixed(Buffer.from(id, 'utf8')),
  ]);
  const buf = Buffer.from(bytes);
  try {
    if (
      buf.length !== expectedPrefix.length + KEY_SIZE ||
      !buf.subarray(0, expectedPrefix.length).equals(expectedPrefix)
    ) {
      throw new UserError(`keyring entry ${id} does not hold a master key for that id`);
    }
    return Buffer.from(buf.subarray(expectedPrefix.length));
  } finally {
    buf.fill(0);
  }
}

async function readPublicKeys(armored: readonly string[]): Promise<openpgp.Key[]> {
  if (armored.length === 0) throw new UserError('an SSE-S3 keyring needs at least one operator public key');
  const keys: openpgp.Key[] = [];
  for (const text of armored) {
    try {
      keys.push(...(await openpgp.readKeys({ armoredKeys: text })));
    } catch (err) {
      throw new UserError(`not an OpenPGP public key: ${errorMessage(err)}`);
    }
  }
  return keys;
}

function keyCheck(id: string, key: Buffer): string {
  return createHmac('sha256', key)
    .update(
      Buffer.concat([Buffer.from(KEY_CHECK_LABEL + '\0', 'ascii'), lengthPrefixed(Buffer.from(id, 'utf8'))]),
    )
    .digest('hex');
}

async function seal(id: string, key: Buffer, recipients: openpgp.Key[]): Promise<SealedMasterKey> {
  const plain = payload(id, key);
  try {
    const message = await openpgp.createMessage({ binary: plain });
    const sealed = await openpgp.encrypt({ message, encryptionKeys: recipients });
    return {
      id,
      created: new Date().toISOString(),
      recipients: recipients.map((k) => k.getFingerprint()),
      sealed,
      check: keyCheck(id, key),
    };
  } finally {
    plain.fill(0);
  }
}

/** Reads a keyring file (sealed: no key in it is usable without an operator's private key). */
export function parseKeyringFile(text: string): KeyringFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UserError('the SSE-S3 keyring file is not valid JSON');
  }
  const f = value as Partial<KeyringFile> | null;
  if (f === null || typeof f !== 'object' || f.format !== KEYRING_FORMAT) {
    throw new UserError('not an SSE-S3 keyring file');
  }
  if (f.v !== KEYRING_VERSION) throw new UserError(`unsupported SSE-S3 keyring version ${String(f.v)}`);
  if (!Array.isArray(f.keys) || typeof f.current !== 'string' || !f.keys.some((k) => k?.id === f.current)) {
    throw new UserError('the SSE-S3 keyring file is damaged (no current key)');
  }
  return f as KeyringFile;
}

/** Unlocked master keys in memory, and the sealed file they came from. */
export class Keyring {
  private constructor(
    private file: KeyringFile,
    private readonly masters: Map<string, Buffer>,
  ) {}

  /** A new keyring with one fresh master key sealed to the given operators (armored OpenPGP public keys). */
  static async create(operatorPublicKeys: readonly string[]): Promise<Keyring> {
    const recipients = await readPublicKeys(operatorPublicKeys);
    const id = randomBytes(8).toString('hex');
    const key = randomBytes(KEY_SIZE);
    const entry = await seal(id, key, recipients);
    return new Keyring(
      { format: KEYRING_FORMAT, v: KEYRING_VERSION, current: id, keys: [entry] },
      new Map([[id, key]]),
    );
  }

  /** Opens a keyring file with one operator's private key (armored; `passphrase` if it is protected). */
  static async unlock(text: string, privateKeyArmored: string, passphrase?: string): Promise<Keyring> {
    let privateKey: openpgp.PrivateKey;
    try {
      privateKey = await openpgp.readPrivateKey({ armoredKey: privateKeyArmored });
      if (!privateKey.isDecrypted()) privateKey = await openpgp.decryptKey({ privateKey, passphrase });
    } catch (err) {
      throw new UserError(`cannot use the operator private key: ${errorMessage(err)}`);
    }
    return Keyring.open(text, async (armoredMessage) => {
      const message = await openpgp.readMessage({ armoredMessage });
      const { data } = await openpgp.decrypt({ message, decryptionKeys: privateKey, format: 'binary' });
      return data;
    });
  }

  /**
   * Opens a keyring file with `decrypt`, which opens one sealed entry (an armored OpenPGP message) — with a
   * private key, or by asking the operator's GnuPG — and throws when it cannot.
   */
  static async open(
    text: string,
    decrypt: (armoredMessage: string) => Promise<Uint8Array>,
  ): Promise<Keyring> {
    const file = parseKeyringFile(text);
    const masters = new Map<string, Buffer>();
    try {
      for (const entry of file.keys) {
        let data: Uint8Array;
        try {
          data = await decrypt(entry.sealed);
        } catch {
          throw new UserError(
            `this private key cannot open SSE-S3 master key ${entry.id} (sealed to ${entry.recipients.join(', ')})`,
          );
        }
        masters.set(entry.id, unpack(entry.id, data));
      }
    } catch (err) {
      zeroize(...masters.values());
      throw err;
    }
    return new Keyring(file, masters);
  }

  /**
   * The keyring of sealed file `text` with master keys an operator unlocked elsewhere (`coffre sse-s3 unlock`
   * opens the file with their private key and hands the keys to the node). Every key of the file must be
   * given, and match its check value.
   */
  static fromUnlockedKeys(text: string, keys: ReadonlyMap<string, Buffer>): Keyring {
    const file = parseKeyringFile(text);
    const masters = new Map<string, Buffer>();
    for (const entry of file.keys) {
      const key = keys.get(entry.id);
      if (!key || key.length !== KEY_SIZE) {
        zeroize(...masters.values());
        throw new UserError(`master key ${entry.id} of the SSE-S3 keyring is missing`);
      }
      const copy = Buffer.from(key);
      if (entry.check !== undefined) {
        const expected = Buffer.from(entry.check, 'hex');
        const actual = Buffer.from(keyCheck(entry.id, copy), 'hex');
        if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
          zeroize(copy, ...masters.values());
          throw new UserError(`the key given for SSE-S3 master key ${entry.id} is not that key`);
        }
      }
      masters.set(entry.id, copy);
    }
    return new Keyring(file, masters);
  }

  /** Copies of the master keys, by id (for handing them to a node: see fromUnlockedKeys). */
  masterKeys(): Map<string, Buffer> {
    return new Map([...this.masters].map(([id, key]) => [id, Buffer.from(key)]));
  }

  /** Id of the master key new objects are written with. */
  get currentKeyId(): string {
    return this.file.current;
  }

  /** Params for writing a new SSE-S3 object. The keyring owns the key: do not zero it per request. */
  paramsForWrite(): EncryptionParams {
    return { kind: 'sse-s3', keyId: this.file.current, rootKey: this.master(this.file.current) };
  }

  /** Params for reading an object whose stored record says SSE-S3. */
  paramsForRead(stored: StoredEncryption): EncryptionParams {
    if (stored.kind !== 'sse-s3') throw new RangeError(`object is ${stored.kind}, not sse-s3`);
    return { kind: 'sse-s3', keyId: stored.keyId, rootKey: this.master(stored.keyId) };
  }

  private master(id: string): Buffer {
    const key = this.masters.get(id);
    // A record naming a key this keyring lacks is a server-side fault, not the client's.
    if (key === undefined) throw S3Errors.internal(`SSE-S3 master key ${id} is not in the keyring`);
    return key;
  }

  /** Adds a fresh master key, sealed to `operatorPublicKeys`, and makes it current. Old keys remain for reads. */
  async rotate(operatorPublicKeys: readonly string[]): Promise<string> {
    const recipients = await readPublicKeys(operatorPublicKeys);
    const id = randomBytes(8).toString('hex');
    const key = randomBytes(KEY_SIZE);
    const entry = await seal(id, key, recipients);
    this.masters.set(id, key);
    this.file = { ...this.file, current: id, keys: [...this.file.keys, entry] };
    return id;
  }

  /**
   * Re-encrypts every master key to exactly `operatorPublicKeys` (to add or remove an operator). A removed
   * operator may have kept the master keys: rotate as well, so at least new objects are out of their reach.
   */
  async reseal(operatorPublicKeys: readonly string[]): Promise<void> {
    const recipients = await readPublicKeys(operatorPublicKeys);
    const keys: SealedMasterKey[] = [];
    for (const old of this.file.keys) {
      const entry = await seal(old.id, this.master(old.id), recipients);
      keys.push({ ...entry, created: old.created });
    }
    this.file = { ...this.file, keys };
  }

  /** The sealed file to store (no key in clear). */
  serialize(): string {
    return JSON.stringify(this.file, null, 2) + '\n';
  }

  /** Zeroes the master keys in memory; the keyring is unusable afterwards. */
  lock(): void {
    zeroize(...this.masters.values());
    this.masters.clear();
  }
}
