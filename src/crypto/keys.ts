// Key derivation and key hygiene shared by every encryption layer: per-object keys derived from a root key
// (a customer's SSE-C key or the SSE-S3 master key) and an object's identity, constant-time comparison of
// secrets, and zeroing of key buffers once a request is done with them.
//
// Derivation is HMAC-SHA256 keyed by the root key over a domain-separation label followed by length-prefixed
// fields. The length prefixes make the encoding injective: ("ab", "c") and ("a", "bc") never collide, so two
// distinct objects can never share a derived key. The exact byte layout is in docs/formats-sse.md; changing it
// makes every stored object unreadable.

import { createHmac, timingSafeEqual } from 'node:crypto';

// ---- Format constants: fixed for key-derivation version 1. DO NOT CHANGE — stored objects depend on them. ----
/** Label that starts every object-key derivation input (ASCII, followed by one 0x00 byte). */
export const OBJECT_KEY_LABEL = 'coffre/object-key/v1';
/** Size in bytes of every root key and derived key (AES-256). */
export const KEY_SIZE = 32;
// ---- end of format constants ----

/** What a derived key is for; each purpose yields an independent key for the same object. */
export type KeyPurpose = 'data' | 'metadata';

/** The identity of one stored object version: what a derived key is bound to. */
export interface ObjectIdentity {
  /** The bucket's stable internal id (not its name, which can be reused after deletion). */
  bucketId: string;
  /** The version id (or multipart upload's version id) the bytes are written under; unique per write. */
  versionId: string;
  /** The S3 object key, as UTF-8. */
  objectKey: string;
}

/**
 * Appends `u32be(len(field)) ‖ field` for each field to `parts`. Used wherever several variable-length values
 * are fed to one MAC, so that field boundaries are unambiguous.
 */
export function lengthPrefixed(...fields: Uint8Array[]): Buffer {
  let total = 0;
  for (const f of fields) total += 4 + f.length;
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const f of fields) {
    off = out.writeUInt32BE(f.length, off);
    out.set(f, off);
    off += f.length;
  }
  return out;
}

/**
 * Derives the 32-byte key for one purpose of one object version:
 * `HMAC-SHA256(rootKey, "coffre/object-key/v1" ‖ 0x00 ‖ lp(purpose) ‖ lp(bucketId) ‖ lp(versionId) ‖ lp(objectKey))`
 * where `lp(x) = u32be(byteLength(x)) ‖ utf8(x)`. The caller owns the result and should `zeroize` it.
 */
export function deriveObjectKey(rootKey: Uint8Array, purpose: KeyPurpose, identity: ObjectIdentity): Buffer {
  if (rootKey.length !== KEY_SIZE) {
    throw new RangeError(`root key must be ${KEY_SIZE} bytes, got ${rootKey.length}`);
  }
  for (const name of ['bucketId', 'versionId'] as const) {
    if (identity[name].length === 0) throw new RangeError(`object identity needs a non-empty ${name}`);
  }
  const mac = createHmac('sha256', rootKey);
  mac.update(OBJECT_KEY_LABEL, 'ascii');
  mac.update(Buffer.of(0));
  mac.update(
    lengthPrefixed(
      Buffer.from(purpose, 'utf8'),
      Buffer.from(identity.bucketId, 'utf8'),
      Buffer.from(identity.versionId, 'utf8'),
      Buffer.from(identity.objectKey, 'utf8'),
    ),
  );
  return mac.digest();
}

/** Compares two secrets (MACs, tokens, key digests) in time independent of where they differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  // The length of a MAC or digest is public; only the contents must not leak through timing.
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** Overwrites every given buffer with zeros; `undefined` entries are skipped so callers can pass optionals. */
export function zeroize(...bufs: (Uint8Array | undefined | null)[]): void {
  for (const b of bufs) b?.fill(0);
}
