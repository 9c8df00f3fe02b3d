// crypt/names: git-annex keys (parse/serialise, chunk keys), HMAC'd object names and the hash directories used by
// the directory remote and the git-annex branch.
import { createHash, createHmac } from 'node:crypto';
import { basename } from 'node:path';

/** MAC algorithms git-annex offers, by their remote.log spelling. */
export const MACS = {
  HMACSHA1: 'sha1',
  HMACSHA224: 'sha224',
  HMACSHA256: 'sha256',
  HMACSHA384: 'sha384',
  HMACSHA512: 'sha512',
} as const;
export type MacName = keyof typeof MACS;
export const DEFAULT_MAC: MacName = 'HMACSHA1';

export function isMacName(s: string): s is MacName {
  return Object.hasOwn(MACS, s);
}

/** `GPG<MAC>--` + hex HMAC of the serialised key: the only name an encrypted remote ever sees. */
export function encryptedName(mac: MacName, macKey: Buffer, key: string): string {
  return `GPG${mac}--${createHmac(MACS[mac], macKey).update(key, 'utf8').digest('hex')}`;
}

/** A parsed annex key: `BACKEND[-sSIZE][-mMTIME][-SCHUNKSIZE-CN]--NAME`. */
export interface AnnexKey {
  backend: string;
  size?: number;
  mtime?: number;
  chunkSize?: number;
  chunkNumber?: number;
  name: string;
}

export function parseKey(text: string): AnnexKey {
  const sep = text.indexOf('--');
  if (sep <= 0) throw new KeyFormatError(`not an annex key: ${text}`);
  const fields = text.slice(0, sep).split('-');
  const key: AnnexKey = { backend: fields[0], name: text.slice(sep + 2) };
  if (!/^[A-Z0-9]+$/.test(key.backend) || key.name.length === 0 || key.name.includes('/')) {
    throw new KeyFormatError(`not an annex key: ${text}`);
  }
  for (const field of fields.slice(1)) {
    const value = Number(field.slice(1));
    if (!/^\d+$/.test(field.slice(1)) || !Number.isSafeInteger(value)) {
      throw new KeyFormatError(`bad field '${field}' in annex key ${text}`);
    }
    switch (field[0]) {
      case 's':
        key.size = value;
        break;
      case 'm':
        key.mtime = value;
        break;
      case 'S':
        key.chunkSize = value;
        break;
      case 'C':
        key.chunkNumber = value;
        break;
      default:
        throw new KeyFormatError(`bad field '${field}' in annex key ${text}`);
    }
  }
  if ((key.chunkSize === undefined) !== (key.chunkNumber === undefined)) {
    throw new KeyFormatError(`chunk size and number go together in annex key ${text}`);
  }
  return key;
}

export function formatKey(key: AnnexKey): string {
  let out = key.backend;
  if (key.size !== undefined) out += `-s${key.size}`;
  if (key.mtime !== undefined) out += `-m${key.mtime}`;
  if (key.chunkSize !== undefined && key.chunkNumber !== undefined)
    out += `-S${key.chunkSize}-C${key.chunkNumber}`;
  return `${out}--${key.name}`;
}

/** Key of chunk n (1-based) of `key` for the given chunk size. */
export function chunkKey(key: string, chunkSize: number, n: number): string {
  const parsed = parseKey(key);
  return formatKey({ ...parsed, chunkSize, chunkNumber: n });
}

/** Number of chunks git-annex makes: every file has at least one, empty ones too. */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize));
}

/**
 * git-annex's hashdirlower: the first 3 and next 3 hex digits of md5(key), e.g. `ef2/8a7`. Chunk fields do not
 * count (git-annex hashes the non-chunk key), so every chunk of an unencrypted key shares its directory.
 */
export function hashDirLower(name: string): string {
  const sep = name.indexOf('--');
  const base = sep > 0 ? name.slice(0, sep).replace(/-S\d+-C\d+$/, '') + name.slice(sep) : name;
  const h = createHash('md5').update(base, 'utf8').digest('hex');
  return `${h.slice(0, 3)}/${h.slice(3, 6)}`;
}

/** The extension git-annex's *E backends keep: up to two, each at most 4 alphanumerics (annex.maxextensionlength). */
export function keyExtension(file: string, maxLength = 4): string {
  const parts = basename(file).replace(/ /g, '').split('.').slice(1).reverse();
  const kept: string[] = [];
  for (const part of parts) {
    if (part.length > maxLength) break;
    if (kept.length === 2) break;
    if (/^[A-Za-z0-9]*$/.test(part)) kept.push(part);
  }
  const exts = kept.reverse().filter((p) => p.length > 0);
  return exts.length === 0 ? '' : '.' + exts.join('.');
}

/** The SHA256E key of content with this size and digest, named after `file`. */
export function sha256eKey(size: number, sha256hex: string, file: string): string {
  return `SHA256E-s${size}--${sha256hex}${keyExtension(file)}`;
}

/** Which hash a key's backend needs for `fsck --full`, or null when the key cannot be checked. */
export function backendHash(backend: string): string | null {
  const b = backend.replace(/E$/, '');
  const table: Record<string, string> = {
    SHA256: 'sha256',
    SHA512: 'sha512',
    SHA384: 'sha384',
    SHA224: 'sha224',
    SHA1: 'sha1',
    MD5: 'md5',
    SHA3_256: 'sha3-256',
    SHA3_512: 'sha3-512',
  };
  return table[b] ?? null;
}

/** The hex digest a key carries (its name without the extension for *E backends). */
export function keyDigest(key: AnnexKey): string {
  if (!key.backend.endsWith('E')) return key.name;
  const dot = key.name.indexOf('.');
  return dot < 0 ? key.name : key.name.slice(0, dot);
}

export class KeyFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFormatError';
  }
}
