// crypt/s2k: OpenPGP string-to-key (RFC 4880 §3.7) — simple, salted and iterated+salted. The iterated form costs
// up to 65 MB of hashing per derivation, so derived keys are cached per (hash, salt, count, passphrase) for the
// life of the process: a remote pays for one derivation per run, not one per object.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { FormatError } from './packets.js';

export const S2KType = { Simple: 0, Salted: 1, IteratedSalted: 3 } as const;

/** OpenPGP hash algorithm ids → node names. */
const HASHES: Record<number, string> = {
  1: 'md5',
  2: 'sha1',
  3: 'ripemd160',
  8: 'sha256',
  9: 'sha384',
  10: 'sha512',
  11: 'sha224',
};

export interface S2KSpec {
  type: number;
  hash: number;
  salt: Buffer;
  /** The coded count byte (iterated only). */
  countByte: number;
}

/** gpg's usual count byte: 0xff = 65011712 bytes, what gpg-agent picks on most machines. */
export const DEFAULT_COUNT_BYTE = 0xff;
export const HASH_SHA256 = 8;

export function decodeCount(c: number): number {
  return (16 + (c & 15)) << ((c >> 4) + 6);
}

export function freshS2K(): S2KSpec {
  return {
    type: S2KType.IteratedSalted,
    hash: HASH_SHA256,
    salt: randomBytes(8),
    countByte: DEFAULT_COUNT_BYTE,
  };
}

export function encodeS2K(spec: S2KSpec): Buffer {
  if (spec.type === S2KType.Simple) return Buffer.from([spec.type, spec.hash]);
  const head = Buffer.concat([Buffer.from([spec.type, spec.hash]), spec.salt]);
  return spec.type === S2KType.Salted ? head : Buffer.concat([head, Buffer.from([spec.countByte])]);
}

/** Parses an S2K specifier at `offset`; returns it and the offset after it. */
export function parseS2K(buf: Buffer, offset: number): { spec: S2KSpec; next: number } {
  const type = buf[offset];
  const hash = buf[offset + 1];
  if (!(hash in HASHES)) throw new FormatError(`unsupported S2K hash algorithm ${hash}`);
  if (type === S2KType.Simple)
    return { spec: { type, hash, salt: Buffer.alloc(0), countByte: 0 }, next: offset + 2 };
  const salt = buf.subarray(offset + 2, offset + 10);
  if (salt.length !== 8) throw new FormatError('S2K salt truncated');
  if (type === S2KType.Salted) return { spec: { type, hash, salt, countByte: 0 }, next: offset + 10 };
  if (type === S2KType.IteratedSalted) {
    if (offset + 10 >= buf.length) throw new FormatError('S2K count missing');
    return { spec: { type, hash, salt, countByte: buf[offset + 10] }, next: offset + 11 };
  }
  throw new FormatError(`unsupported S2K type ${type}`);
}

const cache = new Map<string, Buffer>();

/** Derives keyLength bytes from the passphrase; cached per process. */
export function deriveKey(spec: S2KSpec, passphrase: Buffer, keyLength: number): Buffer {
  const id = createHash('sha256')
    .update(encodeS2K(spec))
    .update(Buffer.from([keyLength]))
    .update(passphrase)
    .digest('hex');
  const hit = cache.get(id);
  if (hit) return hit;
  const key = computeS2K(spec, passphrase, keyLength);
  cache.set(id, key);
  return key;
}

function computeS2K(spec: S2KSpec, passphrase: Buffer, keyLength: number): Buffer {
  const algo = HASHES[spec.hash];
  const material = Buffer.concat([spec.salt, passphrase]);
  const total =
    spec.type === S2KType.IteratedSalted
      ? Math.max(decodeCount(spec.countByte), material.length)
      : material.length;
  // Repeat the material into a ~1 MiB block once, then feed it to every hash context.
  const reps = Math.max(1, Math.floor((1 << 20) / material.length));
  const block = Buffer.alloc(material.length * reps);
  for (let i = 0; i < reps; i++) material.copy(block, i * material.length);
  const out: Buffer[] = [];
  let produced = 0;
  for (let ctx = 0; produced < keyLength; ctx++) {
    const h: Hash = createHash(algo);
    if (ctx > 0) h.update(Buffer.alloc(ctx));
    let left = total;
    while (left > 0) {
      const n = Math.min(left, block.length);
      h.update(n === block.length ? block : block.subarray(0, n));
      left -= n;
    }
    const digest = h.digest();
    out.push(digest);
    produced += digest.length;
  }
  block.fill(0);
  material.fill(0);
  return Buffer.concat(out).subarray(0, keyLength);
}
