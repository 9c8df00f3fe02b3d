// The part of libsodium (through the `sodium-native` addon) that the node-to-node transport uses, with types.
// sodium-native ships no TypeScript declarations; loading it through createRequire and describing only the
// functions we call keeps the typed surface small and avoids an ambient module declaration other folders
// might also write.
import { createRequire } from 'node:module';

export interface Sodium {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_secretbox_detached(
    c: Uint8Array,
    mac: Uint8Array,
    m: Uint8Array,
    n: Uint8Array,
    k: Uint8Array,
  ): void;
  crypto_secretbox_open_detached(
    m: Uint8Array,
    c: Uint8Array,
    mac: Uint8Array,
    n: Uint8Array,
    k: Uint8Array,
  ): boolean;
  crypto_auth(out: Uint8Array, input: Uint8Array, k: Uint8Array): void;
  crypto_auth_verify(h: Uint8Array, input: Uint8Array, k: Uint8Array): boolean;
  /** Throws when the result would be all zeros (a small-order peer point). */
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_keypair(pk: Uint8Array, sk: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  /** Throws on a small-order or non-canonical point. */
  crypto_sign_ed25519_pk_to_curve25519(curvePk: Uint8Array, edPk: Uint8Array): void;
  crypto_sign_ed25519_sk_to_curve25519(curveSk: Uint8Array, edSk: Uint8Array): void;
  randombytes_buf(buf: Uint8Array): void;
  sodium_is_zero(buf: Uint8Array, len?: number): boolean;
  sodium_memzero(buf: Uint8Array): void;
}

export const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

export const SECRETBOX_MAC_BYTES = 16;
export const SECRETBOX_NONCE_BYTES = 24;
export const SECRETBOX_KEY_BYTES = 32;
export const SIGN_PUBLIC_KEY_BYTES = 32;
export const SIGN_SECRET_KEY_BYTES = 64;
export const SIGN_SEED_BYTES = 32;
export const SIGN_BYTES = 64;
export const AUTH_BYTES = 32;
export const CURVE_BYTES = 32;
