// The SSE-S3 keyring: random 32-byte master keys that exist on disk only encrypted (OpenPGP) to one or more
// operators' public keys — git-annex's hybrid scheme — and are unlocked in memory when a node starts. An
// object stored with SSE-S3 derives its data and metadata keys from the master key named in its stored record
// exactly as SSE-C derives them from a customer key (docs/formats-sse.md, section 1).
//
// Rotation adds a new master key that new objects use; older ones stay for reading. Resealing re-encrypts every
// master key to a new set of operators (adding or removing one) without touching objects.
//
// A keyring has a random id. Each sealed entry names, inside what it seals, the keyring it belongs to, its key
// id, its position and its creation time, and the file carries a MAC over all of its entries keyed by all of
// its master keys: an entry copied in from another keyring, or added, removed, reordered or made current by
// someone who can write the file but does not hold the master keys, is refused when the keyring is opened.
// What the file alone cannot tell is a whole keyring replaced by one the writer made (sealed to the operators'
// public keys): `coffre sse-s3 unlock` remembers the keyrings and keys it has unlocked (cli/known-keyrings.ts).
// A running node holds the master keys in memory.
//
// The node's side (a keyring file, unlocked at start or by an operator) is sse/sse-s3-keys.ts.

import * as openpgp from 'openpgp';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { KEY_SIZE, constantTimeEqual, lengthPrefixed, zeroize } from '../crypto/keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { S3Errors } from '../util/s3-error.js';
import { IntegrityError, openSmall, sealSmall } from '../crypto/aead-stream.js';
import type { StoredEncryption } from './object-crypto.js';
import type { EncryptionParams } from './params.js';

// ---- Format constants. DO NOT CHANGE: keyring files depend on them. ----
export const KEYRING_FORMAT = 'coffre-sse-s3-keyring';
/** The version written. Version 1 files (no keyring id, no MAC) are still read; see `Keyring.rotate`. */
export const KEYRING_VERSION = 2;
export const KEYRING_VERSION_V1 = 1;
/**
 * Sealed payload of a version 2 entry: this label ‖ 0x00 ‖ lp(keyringId) ‖ lp(keyId) ‖ lp(created) ‖
 * u32be(position) ‖ masterKey(32), so a sealed key cannot pose as another id, another keyring's, or another
 * place in the list.
 */
export const MASTER_KEY_LABEL = 'coffre/sse-s3-master-key/v2';
/** Sealed payload of a version 1 entry: this label ‖ 0x00 ‖ lp(keyId) ‖ masterKey(32). */
export const MASTER_KEY_LABEL_V1 = 'coffre/sse-s3-master-key/v1';
/** Key check value: HMAC-SHA256(masterKey, this label ‖ 0x00 ‖ lp(keyId)), hex. Optional in version 1. */
export const KEY_CHECK_LABEL = 'coffre/sse-s3-key-check/v1';
/** Keyring MAC key: HKDF-SHA256(masterKey_0 ‖ … ‖ masterKey_n-1, no salt, this label ‖ 0x00 ‖ lp(keyringId)). */
export const KEYRING_MAC_KEY_LABEL = 'coffre/sse-s3-keyring-mac-key/v2';
/** Keyring MAC: HMAC-SHA256(macKey, this label ‖ 0x00 ‖ the fields of the file, see `macInput`), hex. */
export const KEYRING_MAC_LABEL = 'coffre/sse-s3-keyring-mac/v2';
/**
 * An SSE-S3 object's own key, wrapped under a master key: sealSmall(HMAC-SHA256(masterKey, this label ‖ 0x00),
 * objectKey(32), aad = this label ‖ 0x00 ‖ lp(keyId)), base64. Re-wrapping it under a newer master key
 * (`coffre sse-s3 rewrap`) changes the object's record only, after which the older master key can go.
 */
export const OBJECT_KEY_WRAP_LABEL = 'coffre/sse-s3-object-key/v1';
const KEYRING_ID_BYTES = 16;
const KEY_ID_BYTES = 8;
// ---- end of format constants ----

// Bounds on what a keyring file may hold, so a hostile file cannot make a reader allocate without limit.
const MAX_KEYS = 10_000;
const MAX_RECIPIENTS = 100;
const MAX_SEALED_CHARS = 256 * 1024;
const MAX_FIELD_CHARS = 200;
const MAX_PUBLIC_KEY_CHARS = 64 * 1024;
// What a sealed entry may open to: its payload is a few hundred bytes. A planted entry that compresses a huge
// run of bytes (anyone with an operator's public key can make one) is refused once it passes this, before it
// can fill the memory of the node or the operator's CLI.
export const MAX_OPENED_ENTRY_BYTES = 64 * 1024;

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
   * tell that they are this keyring's, without being able to open it. Always present in version 2; absent in
   * version 1 entries made before it was kept, whose keys are then taken as given.
   */
  check?: string;
}

/** A version 1 keyring file: entries not bound to one another (read, never written). */
export interface KeyringFileV1 {
  format: typeof KEYRING_FORMAT;
  v: typeof KEYRING_VERSION_V1;
  current: string;
  keys: SealedMasterKey[];
}

/** The keyring file (JSON) as written. */
export interface KeyringFileV2 {
  format: typeof KEYRING_FORMAT;
  v: typeof KEYRING_VERSION;
  /** Random id of this keyring (32 hex digits), sealed into every entry. */
  keyring: string;
  /** Id of the master key new objects are written with: always the last entry. */
  current: string;
  keys: SealedMasterKey[];
  /** KEYRING_MAC over every other field but publicKeys, keyed by all the master keys (64 hex digits). */
  mac: string;
  /**
   * The armored OpenPGP public keys the entries are sealed to, kept so that the node can say who its operators
   * are (their user ids) without asking anyone's GnuPG. Informational and outside the MAC: a key counts only
   * for the fingerprint it hashes to, and only with the user id its own self-signature binds to it.
   */
  publicKeys?: string[];
}

export type KeyringFile = KeyringFileV1 | KeyringFileV2;

/** What a keyring says about itself (no secret in it). */
export interface KeyringSummary {
  v: number;
  /** Absent for a version 1 keyring, which has no id. */
  keyring?: string;
  current: string;
  keys: { id: string; created: string; recipients: string[] }[];
}

/** Where an entry sits: what its version 2 payload binds it to. */
interface EntryPlace {
  keyringId: string;
  id: string;
  created: string;
  position: number;
}

function altered(detail: string): UserError {
  return new UserError(`the SSE-S3 keyring file has been altered: ${detail}; restore it from a backup`);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');

function payloadPrefix(place: EntryPlace): Buffer {
  return Buffer.concat([
    Buffer.from(MASTER_KEY_LABEL + '\0', 'ascii'),
    lengthPrefixed(utf8(place.keyringId), utf8(place.id), utf8(place.created)),
    u32(place.position),
  ]);
}

function payloadPrefixV1(id: string): Buffer {
  return Buffer.concat([Buffer.from(MASTER_KEY_LABEL_V1 + '\0', 'ascii'), lengthPrefixed(utf8(id))]);
}

/** Reads the fields of a version 2 payload that is not the one expected, to say how it differs. */
function describeMismatch(place: EntryPlace, buf: Buffer): string {
  const label = Buffer.from(MASTER_KEY_LABEL + '\0', 'ascii');
  if (!buf.subarray(0, label.length).equals(label)) return `entry ${place.id} does not hold a master key`;
  let off = label.length;
  const field = (): string | undefined => {
    if (off + 4 > buf.length) return undefined;
    const n = buf.readUInt32BE(off);
    if (off + 4 + n > buf.length || n > MAX_FIELD_CHARS) return undefined;
    const s = buf.subarray(off + 4, off + 4 + n).toString('utf8');
    off += 4 + n;
    return s;
  };
  const keyringId = field();
  const id = field();
  const created = field();
  const position = off + 4 <= buf.length ? buf.readUInt32BE(off) : undefined;
  if (keyringId !== place.keyringId)
    return `master key ${place.id} was sealed for keyring ${keyringId ?? '?'}, not this keyring ${place.keyringId} (copied from another keyring)`;
  if (id !== place.id) return `entry ${place.id} holds master key ${id ?? '?'}`;
  if (position !== place.position)
    return `master key ${place.id} was sealed at position ${position ?? '?'}, not ${place.position} (entries reordered or removed)`;
  if (created !== place.created) return `master key ${place.id} was sealed with another creation time`;
  return `entry ${place.id} does not hold a master key`;
}

function unpack(place: EntryPlace, bytes: Uint8Array): Buffer {
  const prefix = payloadPrefix(place);
  const buf = Buffer.from(bytes);
  try {
    if (buf.length !== prefix.length + KEY_SIZE || !buf.subarray(0, prefix.length).equals(prefix))
      throw altered(describeMismatch(place, buf));
    return Buffer.from(buf.subarray(prefix.length));
  } finally {
    buf.fill(0);
  }
}

function unpackV1(id: string, bytes: Uint8Array): Buffer {
  const prefix = payloadPrefixV1(id);
  const buf = Buffer.from(bytes);
  try {
    if (buf.length !== prefix.length + KEY_SIZE || !buf.subarray(0, prefix.length).equals(prefix)) {
      throw new UserError(`keyring entry ${id} does not hold a master key for that id`);
    }
    return Buffer.from(buf.subarray(prefix.length));
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
    .update(Buffer.concat([Buffer.from(KEY_CHECK_LABEL + '\0', 'ascii'), lengthPrefixed(utf8(id))]))
    .digest('hex');
}

async function seal(place: EntryPlace, key: Buffer, recipients: openpgp.Key[]): Promise<SealedMasterKey> {
  const plain = Buffer.concat([payloadPrefix(place), key]);
  try {
    const message = await openpgp.createMessage({ binary: plain });
    const sealed = await openpgp.encrypt({ message, encryptionKeys: recipients });
    return {
      id: place.id,
      created: place.created,
      recipients: recipients.map((k) => k.getFingerprint()),
      sealed,
      check: keyCheck(place.id, key),
    };
  } finally {
    plain.fill(0);
  }
}

/** Everything in a version 2 file but its MAC, in order: what the MAC authenticates. */
function macInput(file: Omit<KeyringFileV2, 'mac'>): Buffer {
  const parts: Buffer[] = [
    Buffer.from(KEYRING_MAC_LABEL + '\0', 'ascii'),
    lengthPrefixed(utf8(file.keyring), utf8(file.current)),
    u32(file.keys.length),
  ];
  for (const k of file.keys) {
    parts.push(lengthPrefixed(utf8(k.id), utf8(k.created)), u32(k.recipients.length));
    parts.push(lengthPrefixed(...k.recipients.map(utf8)));
    parts.push(lengthPrefixed(utf8(k.sealed), utf8(k.check ?? '')));
  }
  return Buffer.concat(parts);
}

function keyringMac(file: Omit<KeyringFileV2, 'mac'>, masters: ReadonlyMap<string, Buffer>): string {
  const ikm = Buffer.concat(file.keys.map((k) => masterOf(masters, k.id)));
  const info = Buffer.concat([
    Buffer.from(KEYRING_MAC_KEY_LABEL + '\0', 'ascii'),
    lengthPrefixed(utf8(file.keyring)),
  ]);
  const macKey = Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), info, 32));
  try {
    return createHmac('sha256', macKey).update(macInput(file)).digest('hex');
  } finally {
    zeroize(ikm, macKey);
  }
}

function masterOf(masters: ReadonlyMap<string, Buffer>, id: string): Buffer {
  const key = masters.get(id);
  if (key === undefined) throw new RangeError(`master key ${id} is not unlocked`);
  return key;
}

function withMac(file: Omit<KeyringFileV2, 'mac'>, masters: ReadonlyMap<string, Buffer>): KeyringFileV2 {
  return { ...file, mac: keyringMac(file, masters) };
}

function checkMac(file: KeyringFileV2, masters: ReadonlyMap<string, Buffer>): void {
  const { mac, ...rest } = file;
  const expected = Buffer.from(mac, 'hex');
  const actual = Buffer.from(keyringMac(rest, masters), 'hex');
  if (!constantTimeEqual(expected, actual))
    throw altered(
      'its MAC does not match its entries (an entry was added, removed, swapped or made current)',
    );
}

// ---- Reading a file: every field checked into its type. ----

const HEX = /^[0-9a-f]+$/;

function hexField(value: unknown, bytes: number, what: string): string {
  if (typeof value !== 'string' || value.length !== bytes * 2 || !HEX.test(value))
    throw new UserError(`the SSE-S3 keyring file is damaged (${what} is not ${bytes * 2} hex digits)`);
  return value;
}

function textField(value: unknown, max: number, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max)
    throw new UserError(
      `the SSE-S3 keyring file is damaged (${what} is not a string of at most ${max} characters)`,
    );
  return value;
}

function parseEntry(value: unknown, version: number, index: number): SealedMasterKey {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new UserError(`the SSE-S3 keyring file is damaged (entry ${index} is not an object)`);
  const e = value as Record<string, unknown>;
  const id = hexField(e.id, KEY_ID_BYTES, `entry ${index}'s id`);
  const created = textField(e.created, MAX_FIELD_CHARS, `entry ${id}'s created`);
  if (!Array.isArray(e.recipients) || e.recipients.length > MAX_RECIPIENTS)
    throw new UserError(`the SSE-S3 keyring file is damaged (entry ${id}'s recipients is not a list)`);
  const recipients = e.recipients.map((r) => textField(r, MAX_FIELD_CHARS, `a recipient of entry ${id}`));
  const sealed = textField(e.sealed, MAX_SEALED_CHARS, `entry ${id}'s sealed message`);
  const entry: SealedMasterKey = { id, created, recipients, sealed };
  if (e.check !== undefined || version >= KEYRING_VERSION)
    entry.check = hexField(e.check, 32, `entry ${id}'s check value`);
  return entry;
}

/** Reads a keyring file (sealed: no key in it is usable without an operator's private key). */
export function parseKeyringFile(text: string): KeyringFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UserError('the SSE-S3 keyring file is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new UserError('not an SSE-S3 keyring file');
  const f = value as Record<string, unknown>;
  if (f.format !== KEYRING_FORMAT) throw new UserError('not an SSE-S3 keyring file');
  if (f.v !== KEYRING_VERSION && f.v !== KEYRING_VERSION_V1)
    throw new UserError(`unsupported SSE-S3 keyring version ${String(f.v)} (a newer coffre wrote it?)`);
  const v = f.v;
  if (
    !Array.isArray(f.keys) ||
    f.keys.length === 0 ||
    f.keys.length > MAX_KEYS ||
    typeof f.current !== 'string'
  )
    throw new UserError('the SSE-S3 keyring file is damaged (no current key)');
  const keys = f.keys.map((k, i) => parseEntry(k, v, i));
  if (new Set(keys.map((k) => k.id)).size !== keys.length)
    throw new UserError('the SSE-S3 keyring file is damaged (a key id appears twice)');
  const current = f.current;
  if (!keys.some((k) => k.id === current))
    throw new UserError('the SSE-S3 keyring file is damaged (no current key)');
  if (v === KEYRING_VERSION_V1) return { format: KEYRING_FORMAT, v, current, keys };
  if (keys[keys.length - 1]!.id !== current) throw altered(`its current key ${current} is not its newest`);
  const keyring = hexField(f.keyring, KEYRING_ID_BYTES, 'the keyring id');
  const mac = hexField(f.mac, 32, 'the MAC');
  const file: KeyringFileV2 = { format: KEYRING_FORMAT, v, keyring, current, keys, mac };
  if (f.publicKeys !== undefined) {
    if (!Array.isArray(f.publicKeys) || f.publicKeys.length > MAX_RECIPIENTS)
      throw new UserError('the SSE-S3 keyring file is damaged (publicKeys is not a list)');
    file.publicKeys = f.publicKeys.map((k) => textField(k, MAX_PUBLIC_KEY_CHARS, 'a public key'));
  }
  return file;
}

/**
 * The public keys to keep in a keyring whose entries are `entries`: the ones just sealed to, and those kept
 * before whose fingerprint an entry still names. Public parts only: a private key given as a recipient by
 * mistake never reaches the file.
 */
async function keptPublicKeys(
  entries: readonly SealedMasterKey[],
  before: readonly string[] | undefined,
  sealedTo: readonly openpgp.Key[],
): Promise<string[]> {
  const named = new Set(entries.flatMap((e) => e.recipients));
  const byFingerprint = new Map<string, string>();
  for (const armoredKey of before ?? []) {
    const key = await openpgp.readKey({ armoredKey }).catch(() => undefined);
    if (key && !key.isPrivate()) byFingerprint.set(key.getFingerprint(), armoredKey);
  }
  for (const key of sealedTo) byFingerprint.set(key.getFingerprint(), key.toPublic().armor());
  return [...byFingerprint].filter(([fp]) => named.has(fp)).map(([, armored]) => armored);
}

/**
 * Who the keyring's master keys are sealed to, by OpenPGP user id: fingerprint → the primary user id that the
 * key's self-signature binds to it. A fingerprint with no public key kept (version 1, a keyring made before
 * they were kept) or whose key does not verify is left out: the page then shows the fingerprint alone.
 */
export async function recipientUserIds(file: KeyringFile): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (file.v !== KEYRING_VERSION || !file.publicKeys) return out;
  const named = new Set(file.keys.flatMap((e) => e.recipients));
  for (const armoredKey of file.publicKeys) {
    try {
      const key = await openpgp.readKey({ armoredKey });
      const fingerprint = key.getFingerprint();
      if (key.isPrivate() || !named.has(fingerprint)) continue;
      const { user } = await key.getPrimaryUser();
      const userId = user.userID?.userID;
      if (userId) out[fingerprint] = userId.slice(0, MAX_FIELD_CHARS);
    } catch {
      // A key that does not read, or whose user id is not self-signed, names no one.
    }
  }
  return out;
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
    const keyringId = randomBytes(KEYRING_ID_BYTES).toString('hex');
    const place = { keyringId, id: newKeyId(), created: new Date().toISOString(), position: 0 };
    const key = randomBytes(KEY_SIZE);
    const entry = await seal(place, key, recipients);
    const masters = new Map([[place.id, key]]);
    const file = withMac(
      {
        format: KEYRING_FORMAT,
        v: KEYRING_VERSION,
        keyring: keyringId,
        current: place.id,
        keys: [entry],
        publicKeys: await keptPublicKeys([entry], undefined, recipients),
      },
      masters,
    );
    return new Keyring(file, masters);
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
    return Keyring.open(text, (armoredMessage) => openSealedEntry(armoredMessage, privateKey));
  }

  /**
   * Opens a keyring file with `decrypt`, which opens one sealed entry (an armored OpenPGP message) — with a
   * private key, or by asking the operator's GnuPG — and throws when it cannot. Every entry must be sealed
   * for its place in this keyring, and (version 2) the file's MAC must match its master keys.
   */
  static async open(
    text: string,
    decrypt: (armoredMessage: string) => Promise<Uint8Array>,
  ): Promise<Keyring> {
    const file = parseKeyringFile(text);
    const masters = new Map<string, Buffer>();
    try {
      for (const [position, entry] of file.keys.entries()) {
        let data: Uint8Array;
        try {
          data = await decrypt(entry.sealed);
        } catch {
          throw new UserError(
            `this private key cannot open SSE-S3 master key ${entry.id} (sealed to ${entry.recipients.join(', ')})`,
          );
        }
        masters.set(
          entry.id,
          file.v === KEYRING_VERSION_V1
            ? unpackV1(entry.id, data)
            : unpack({ keyringId: file.keyring, id: entry.id, created: entry.created, position }, data),
        );
      }
      if (file.v === KEYRING_VERSION) checkMac(file, masters);
    } catch (err) {
      zeroize(...masters.values());
      throw err;
    }
    return new Keyring(file, masters);
  }

  /**
   * The keyring of sealed file `text` with master keys an operator unlocked elsewhere (`coffre sse-s3 unlock`
   * opens the file with their private key and hands the keys to the node). Every key of the file must be
   * given, and match its check value and (version 2) the file's MAC.
   */
  static fromUnlockedKeys(text: string, keys: ReadonlyMap<string, Buffer>): Keyring {
    const file = parseKeyringFile(text);
    const masters = new Map<string, Buffer>();
    try {
      for (const entry of file.keys) {
        const key = keys.get(entry.id);
        if (!key || key.length !== KEY_SIZE)
          throw new UserError(`master key ${entry.id} of the SSE-S3 keyring is missing`);
        const copy = Buffer.from(key);
        masters.set(entry.id, copy);
        if (
          entry.check !== undefined &&
          !constantTimeEqual(Buffer.from(entry.check, 'hex'), Buffer.from(keyCheck(entry.id, copy), 'hex'))
        )
          throw new UserError(`the key given for SSE-S3 master key ${entry.id} is not that key`);
      }
      if (file.v === KEYRING_VERSION) checkMac(file, masters);
    } catch (err) {
      zeroize(...masters.values());
      throw err;
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

  /** This keyring's id; undefined for a version 1 keyring, which has none. */
  get keyringId(): string | undefined {
    return this.file.v === KEYRING_VERSION ? this.file.keyring : undefined;
  }

  /** The ids, dates and recipients of the master keys, and which is current (nothing secret). */
  summary(): KeyringSummary {
    return summarize(this.file);
  }

  /** Who the master keys are sealed to, by OpenPGP user id (see recipientUserIds). */
  recipientUserIds(): Promise<Record<string, string>> {
    return recipientUserIds(this.file);
  }

  /**
   * Params for writing a new SSE-S3 object: a fresh object key, wrapped under the current master key. The
   * params own the object key (dispose zeroes it).
   */
  paramsForWrite(): EncryptionParams {
    const keyId = this.file.current;
    const rootKey = randomBytes(KEY_SIZE);
    return { kind: 'sse-s3', keyId, rootKey, wrappedKey: wrapObjectKey(this.master(keyId), keyId, rootKey) };
  }

  /** Params for reading an object whose stored record says SSE-S3. */
  paramsForRead(stored: StoredEncryption): EncryptionParams {
    if (stored.kind !== 'sse-s3') throw new RangeError(`object is ${stored.kind}, not sse-s3`);
    const master = this.master(stored.keyId);
    if (stored.wrappedKey === undefined) return { kind: 'sse-s3', keyId: stored.keyId, rootKey: master };
    return {
      kind: 'sse-s3',
      keyId: stored.keyId,
      rootKey: unwrapObjectKey(master, stored.keyId, stored.wrappedKey),
      wrappedKey: stored.wrappedKey,
    };
  }

  /**
   * The record of an SSE-S3 object with its key re-wrapped under the current master key: undefined when it
   * is under that key already. An object written before keys were wrapped (its keys derive from the master
   * key itself) gets that master key as its wrapped object key.
   */
  rewrapped(stored: StoredEncryption): StoredEncryption | undefined {
    if (stored.kind !== 'sse-s3') throw new RangeError(`object is ${stored.kind}, not sse-s3`);
    const current = this.file.current;
    if (stored.keyId === current) return undefined;
    // An object written before keys were wrapped derives its keys from the master key itself: that master key
    // is its object key, wrapped like any other. Its data stays as it is (no copy through the gateway), so
    // whoever kept a copy of that old master key can still read it: only rewriting its data changes that.
    const objectKey =
      stored.wrappedKey === undefined
        ? Buffer.from(this.master(stored.keyId))
        : unwrapObjectKey(this.master(stored.keyId), stored.keyId, stored.wrappedKey);
    try {
      return {
        ...stored,
        keyId: current,
        wrappedKey: wrapObjectKey(this.master(current), current, objectKey),
      };
    } finally {
      objectKey.fill(0);
    }
  }

  private master(id: string): Buffer {
    const key = this.masters.get(id);
    // A record naming a key this keyring lacks is a server-side fault, not the client's.
    if (key === undefined) throw S3Errors.internal(`SSE-S3 master key ${id} is not in the keyring`);
    return key;
  }

  /**
   * Adds a fresh master key, sealed to `operatorPublicKeys`, and makes it current. Old keys remain for reads.
   * A version 1 keyring is resealed first (which upgrades it), as rotating it would add a bound entry to
   * unbound ones: that is refused with what to run.
   */
  async rotate(operatorPublicKeys: readonly string[]): Promise<string> {
    const file = this.file;
    if (file.v === KEYRING_VERSION_V1)
      throw new UserError(
        'this SSE-S3 keyring is in format 1, whose entries are not bound together: upgrade it with `coffre sse-s3 reseal --recipient …` first, then rotate',
      );
    const recipients = await readPublicKeys(operatorPublicKeys);
    const place = {
      keyringId: file.keyring,
      id: newKeyId(),
      created: new Date().toISOString(),
      position: file.keys.length,
    };
    const key = randomBytes(KEY_SIZE);
    const entry = await seal(place, key, recipients);
    this.masters.set(place.id, key);
    const { mac: _old, ...rest } = file;
    const keys = [...file.keys, entry];
    const publicKeys = await keptPublicKeys(keys, file.publicKeys, recipients);
    this.file = withMac({ ...rest, current: place.id, keys, publicKeys }, this.masters);
    return place.id;
  }

  /**
   * Re-encrypts every master key to exactly `operatorPublicKeys` (to add or remove an operator). A removed
   * operator may have kept the master keys: rotate as well, so at least new objects are out of their reach.
   * A version 1 keyring comes out in version 2, with a new keyring id.
   */
  async reseal(operatorPublicKeys: readonly string[]): Promise<void> {
    const recipients = await readPublicKeys(operatorPublicKeys);
    const old = this.file;
    const keyringId = old.v === KEYRING_VERSION ? old.keyring : randomBytes(KEYRING_ID_BYTES).toString('hex');
    // Version 1 did not require the current key to be the newest; version 2 does.
    const ordered = [
      ...old.keys.filter((k) => k.id !== old.current),
      old.keys.find((k) => k.id === old.current)!,
    ];
    const keys: SealedMasterKey[] = [];
    for (const [position, entry] of ordered.entries()) {
      const place = { keyringId, id: entry.id, created: entry.created, position };
      keys.push(await seal(place, this.master(entry.id), recipients));
    }
    this.file = withMac(
      {
        format: KEYRING_FORMAT,
        v: KEYRING_VERSION,
        keyring: keyringId,
        current: old.current,
        keys,
        publicKeys: await keptPublicKeys(keys, undefined, recipients),
      },
      this.masters,
    );
  }

  /**
   * Removes master key `id` for good, once no object needs it (`coffre sse-s3 rewrap` moved every object to
   * a newer key): the remaining entries take new positions, so they are sealed anew to
   * `operatorPublicKeys`. The current key cannot be removed.
   */
  async drop(id: string, operatorPublicKeys: readonly string[]): Promise<void> {
    const old = this.file;
    if (old.v === KEYRING_VERSION_V1)
      throw new UserError(
        'this SSE-S3 keyring is in format 1: upgrade it with `coffre sse-s3 reseal --recipient …` first',
      );
    if (id === old.current)
      throw new UserError(`master key ${id} is the current key: rotate first, then rewrap, then drop it`);
    if (!old.keys.some((k) => k.id === id)) throw new UserError(`the SSE-S3 keyring has no master key ${id}`);
    const recipients = await readPublicKeys(operatorPublicKeys);
    const keys: SealedMasterKey[] = [];
    for (const [position, entry] of old.keys.filter((k) => k.id !== id).entries()) {
      const place = { keyringId: old.keyring, id: entry.id, created: entry.created, position };
      keys.push(await seal(place, this.master(entry.id), recipients));
    }
    const dropped = this.masters.get(id)!;
    this.masters.delete(id);
    dropped.fill(0);
    const { mac: _old, ...rest } = old;
    this.file = withMac({ ...rest, keys }, this.masters);
  }

  /** Whether master key `id` comes before master key `other` in this keyring (is older). */
  isOlder(id: string, other: string): boolean {
    const ids = this.file.keys.map((k) => k.id);
    const a = ids.indexOf(id);
    const b = ids.indexOf(other);
    return a >= 0 && b >= 0 && a < b;
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

function wrapKeyOf(master: Buffer): Buffer {
  return createHmac('sha256', master).update(OBJECT_KEY_WRAP_LABEL, 'ascii').update(Buffer.of(0)).digest();
}

function wrapAad(keyId: string): Buffer {
  return Buffer.concat([Buffer.from(OBJECT_KEY_WRAP_LABEL + '\0', 'ascii'), lengthPrefixed(utf8(keyId))]);
}

function wrapObjectKey(master: Buffer, keyId: string, objectKey: Buffer): string {
  const kek = wrapKeyOf(master);
  try {
    return sealSmall(kek, objectKey, wrapAad(keyId)).toString('base64');
  } finally {
    kek.fill(0);
  }
}

function unwrapObjectKey(master: Buffer, keyId: string, wrapped: string): Buffer {
  const kek = wrapKeyOf(master);
  try {
    const key = openSmall(kek, Buffer.from(wrapped, 'base64'), wrapAad(keyId));
    if (key.length !== KEY_SIZE) throw new IntegrityError('a wrapped object key is not 32 bytes');
    return key;
  } catch {
    // The record names a key it was not wrapped under, or was altered: the server's fault, not the client's.
    throw S3Errors.internal(`an SSE-S3 object's key does not open with master key ${keyId}`);
  } finally {
    kek.fill(0);
  }
}

function newKeyId(): string {
  return randomBytes(KEY_ID_BYTES).toString('hex');
}

/** What a parsed keyring file says about itself. */
export function summarize(file: KeyringFile): KeyringSummary {
  return {
    v: file.v,
    keyring: file.v === KEYRING_VERSION ? file.keyring : undefined,
    current: file.current,
    keys: file.keys.map((k) => ({ id: k.id, created: k.created, recipients: k.recipients })),
  };
}

/** Opens one sealed entry with an operator's private key, refusing any that opens to more than an entry holds. */
export async function openSealedEntry(
  armoredMessage: string,
  privateKey: openpgp.PrivateKey,
): Promise<Uint8Array> {
  const message = await openpgp.readMessage({ armoredMessage });
  const { data } = await openpgp.decrypt({
    message,
    decryptionKeys: privateKey,
    format: 'binary',
    config: { maxDecompressedMessageSize: MAX_OPENED_ENTRY_BYTES },
  });
  if (data.length > MAX_OPENED_ENTRY_BYTES)
    throw new Error('a sealed entry opens to more than an entry holds');
  return data;
}
