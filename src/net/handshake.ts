// Secret Handshake v1 (Scuttlebutt's SHS): mutual authentication of two nodes that share a network key
// (coffre's rpc_secret) and know each other's long-term Ed25519 keys, ending with one box-stream key and
// nonce per direction. See docs/formats-rpc.md.
//
// Two layers:
// - Pure steps named after the reference implementation's functions (initialize, createChallenge,
//   verifyChallenge, clientVerifyChallenge, clientCreateAuth, serverVerifyAuth, serverCreateAccept,
//   clientVerifyAccept, clean, toKeys). They take a state and return a new state (or the bytes to send, or
//   null when the peer's message does not verify). The state's field names follow the reference's so that the
//   public known-answer vectors (test/net/shs-vectors.test.ts) check every step byte for byte.
// - clientHandshake / serverHandshake run those steps over a socket with a deadline. On any failure the
//   socket is destroyed without another byte written, and the error says what failed, never a key.
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import {
  AUTH_BYTES,
  CURVE_BYTES,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  SIGN_BYTES,
  SIGN_PUBLIC_KEY_BYTES,
  SIGN_SECRET_KEY_BYTES,
  SIGN_SEED_BYTES,
  sodium,
} from './sodium.js';

// ---- Message sizes of SHS v1. DO NOT CHANGE: they are the protocol. ----
/** Client and server hello: auth(N, eph_pub) ‖ eph_pub. */
export const CHALLENGE_LENGTH = AUTH_BYTES + CURVE_BYTES; // 64
/** Client authenticate: box(sig_A ‖ A_pub), 16-byte tag first. */
export const CLIENT_AUTH_LENGTH = SECRETBOX_MAC_BYTES + SIGN_PUBLIC_KEY_BYTES + SIGN_BYTES; // 112
/** Server accept: box(sig_B). */
export const SERVER_ACCEPT_LENGTH = SECRETBOX_MAC_BYTES + SIGN_BYTES; // 80
/** Both boxed handshake messages use the all-zero nonce: each key is used for exactly one message. */
const ZERO_NONCE = Buffer.alloc(SECRETBOX_NONCE_BYTES);
/** A handshake that has not finished after this long is abandoned. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** A long-term Ed25519 key pair (libsodium layout: secretKey = seed ‖ publicKey). */
export interface KeyPair {
  publicKey: Buffer;
  secretKey: Buffer;
}

interface LocalState {
  publicKey: Buffer;
  secretKey: Buffer;
  /** Ephemeral Curve25519 key pair for this handshake. */
  kx_pk: Buffer;
  kx_sk: Buffer | null;
  /** auth(N, kx_pk): our challenge MAC; its first 24 bytes are the peer's first box-stream nonce. */
  app_mac: Buffer;
  /** Client only: sig_A ‖ A_pub, the plaintext of the client authenticate message. */
  hello?: Buffer;
}

interface RemoteState {
  publicKey?: Buffer;
  kx_pk?: Buffer;
  app_mac?: Buffer;
  /** Server only: the client's decrypted sig_A ‖ A_pub. */
  hello?: Buffer;
}

/** Handshake state, field names as in the reference implementation (see the header comment). */
export interface ShsState {
  /** The network key N (rpc_secret). */
  app_key: Buffer;
  local: LocalState;
  remote: RemoteState;
  seed?: Buffer | null;
  random?: Buffer;
  /** X25519(a, b) */
  secret?: Buffer | null;
  /** sha256(secret) */
  shash?: Buffer | null;
  /** X25519(a, curve(B)) */
  a_bob?: Buffer | null;
  /** sha256(N ‖ ab ‖ aB): key of the client authenticate box */
  secret2?: Buffer | null;
  /** X25519(curve(A), b) */
  b_alice?: Buffer | null;
  /** sha256(N ‖ ab ‖ aB ‖ Ab): key of the server accept box */
  secret3?: Buffer | null;
  encryptKey?: Buffer;
  decryptKey?: Buffer;
  /** Whatever the server's authorize step attached; carried through untouched. */
  auth?: unknown;
}

/** What initialize needs: the network key, our long-term keys (or a seed), 32 random bytes, the server's key. */
export interface ShsInit {
  app_key: Buffer;
  local?: { publicKey: Buffer; secretKey: Buffer } | null;
  remote?: { publicKey?: Buffer };
  seed?: Buffer | null;
  random: Buffer;
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

function hmac(message: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(AUTH_BYTES);
  sodium.crypto_auth(out, message, key);
  return out;
}

/** X25519 that refuses an all-zero result (the peer sent a small-order point). */
function dh(secretKey: Buffer, publicKey: Buffer): Buffer | null {
  const out = Buffer.alloc(CURVE_BYTES);
  try {
    sodium.crypto_scalarmult(out, secretKey, publicKey);
  } catch {
    return null;
  }
  return sodium.sodium_is_zero(out) ? null : out;
}

function edPublicToCurve(publicKey: Buffer): Buffer | null {
  if (publicKey.length !== SIGN_PUBLIC_KEY_BYTES) return null;
  const out = Buffer.alloc(CURVE_BYTES);
  try {
    sodium.crypto_sign_ed25519_pk_to_curve25519(out, publicKey);
  } catch {
    return null;
  }
  return out;
}

function edSecretToCurve(secretKey: Buffer): Buffer {
  const out = Buffer.alloc(CURVE_BYTES);
  sodium.crypto_sign_ed25519_sk_to_curve25519(out, secretKey);
  return out;
}

function sign(message: Buffer, secretKey: Buffer): Buffer {
  const sig = Buffer.alloc(SIGN_BYTES);
  sodium.crypto_sign_detached(sig, message, secretKey);
  return sig;
}

function verify(sig: Buffer, message: Buffer, publicKey: Buffer): boolean {
  if (sig.length !== SIGN_BYTES || publicKey.length !== SIGN_PUBLIC_KEY_BYTES) return false;
  return sodium.crypto_sign_verify_detached(sig, message, publicKey);
}

function box(plain: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(plain.length + SECRETBOX_MAC_BYTES);
  sodium.crypto_secretbox_easy(out, plain, ZERO_NONCE, key);
  return out;
}

function unbox(boxed: Buffer, key: Buffer): Buffer | null {
  if (boxed.length < SECRETBOX_MAC_BYTES) return null;
  const out = Buffer.alloc(boxed.length - SECRETBOX_MAC_BYTES);
  return sodium.crypto_secretbox_open_easy(out, boxed, ZERO_NONCE, key) ? out : null;
}

function need(value: Buffer | null | undefined, what: string): Buffer {
  if (!value) throw new Error(`secret handshake: ${what} missing from state (steps called out of order)`);
  return value;
}

function assertLength(buf: Buffer, what: string, length: number): void {
  if (buf.length !== length) {
    throw new Error(`secret handshake: ${what} must be ${length} bytes, got ${buf.length}`);
  }
}

/** An Ed25519 key pair from a 32-byte seed (the reference accepts either a seed or a key pair). */
export function toKeys(keys: Buffer | KeyPair): KeyPair {
  if (!Buffer.isBuffer(keys)) return keys;
  assertLength(keys, 'seed', SIGN_SEED_BYTES);
  const publicKey = Buffer.alloc(SIGN_PUBLIC_KEY_BYTES);
  const secretKey = Buffer.alloc(SIGN_SECRET_KEY_BYTES);
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, keys);
  return { publicKey, secretKey };
}

/** Derives the ephemeral key pair from `random` (32 bytes) and our challenge MAC. */
export function initialize(init: ShsInit): ShsState {
  const longTerm = init.seed ? toKeys(init.seed) : init.local;
  if (!longTerm) throw new Error('secret handshake: no local key pair');
  assertLength(init.random, 'random', SIGN_SEED_BYTES);
  // Ephemeral Curve25519 keys come from an Ed25519 seed, as in the reference, so vectors reproduce.
  const eph = toKeys(init.random);
  const kx_pk = edPublicToCurve(eph.publicKey);
  if (!kx_pk) throw new Error('secret handshake: ephemeral key conversion failed');
  const kx_sk = edSecretToCurve(eph.secretKey);
  eph.secretKey.fill(0);
  return {
    ...init,
    app_key: init.app_key,
    local: {
      kx_pk,
      kx_sk,
      publicKey: longTerm.publicKey,
      secretKey: longTerm.secretKey,
      app_mac: hmac(kx_pk, init.app_key),
    },
    remote: init.remote ?? {},
  };
}

/** Our hello: auth(N, kx_pk) ‖ kx_pk (64 bytes). */
export function createChallenge(state: ShsState): Buffer {
  return Buffer.concat([state.local.app_mac, state.local.kx_pk]);
}

/** Checks the peer's hello under the network key and computes ab = X25519(a, b). */
export function verifyChallenge(state: ShsState, challenge: Buffer): ShsState | null {
  assertLength(challenge, 'challenge', CHALLENGE_LENGTH);
  const mac = challenge.subarray(0, AUTH_BYTES);
  const remoteKx = challenge.subarray(AUTH_BYTES, CHALLENGE_LENGTH);
  // crypto_auth_verify compares in constant time.
  if (!sodium.crypto_auth_verify(mac, remoteKx, state.app_key)) return null;
  const secret = dh(need(state.local.kx_sk, 'kx_sk'), remoteKx);
  if (!secret) return null;
  return {
    ...state,
    remote: { ...state.remote, kx_pk: Buffer.from(remoteKx), app_mac: Buffer.from(mac) },
    secret,
    shash: sha256(secret),
  };
}

/** Client: verifies the server's hello, computes aB, and prepares sig_A ‖ A_pub. */
export function clientVerifyChallenge(state: ShsState, challenge: Buffer): ShsState | null {
  assertLength(challenge, 'challenge', CHALLENGE_LENGTH);
  const verified = verifyChallenge(state, challenge);
  if (!verified) return null;
  const serverKey = need(verified.remote.publicKey, 'remote.publicKey');
  const serverCurve = edPublicToCurve(serverKey);
  if (!serverCurve) return null;
  const a_bob = dh(need(verified.local.kx_sk, 'kx_sk'), serverCurve);
  if (!a_bob) return null;
  const secret = need(verified.secret, 'secret');
  const shash = need(verified.shash, 'shash');
  const secret2 = sha256(verified.app_key, secret, a_bob);
  const sig = sign(Buffer.concat([verified.app_key, serverKey, shash]), verified.local.secretKey);
  return {
    ...verified,
    local: { ...verified.local, hello: Buffer.concat([sig, verified.local.publicKey]) },
    a_bob,
    secret2,
  };
}

/** Client authenticate message: box(sig_A ‖ A_pub) under secret2 (112 bytes). */
export function clientCreateAuth(state: ShsState): Buffer {
  return box(need(state.local.hello, 'local.hello'), need(state.secret2, 'secret2'));
}

/** Server: opens the client's authenticate message, checks sig_A, learns A_pub, computes Ab. */
export function serverVerifyAuth(state: ShsState, data: Buffer): ShsState | null {
  assertLength(data, 'client auth', CLIENT_AUTH_LENGTH);
  const remoteKx = need(state.remote.kx_pk, 'remote.kx_pk');
  const localCurveSk = edSecretToCurve(state.local.secretKey);
  const a_bob = dh(localCurveSk, remoteKx);
  localCurveSk.fill(0);
  if (!a_bob) return null;
  const secret = need(state.secret, 'secret');
  const shash = need(state.shash, 'shash');
  const secret2 = sha256(state.app_key, secret, a_bob);
  const hello = unbox(data, secret2);
  if (!hello) return null;
  const sig = hello.subarray(0, SIGN_BYTES);
  const clientKey = hello.subarray(SIGN_BYTES, SIGN_BYTES + SIGN_PUBLIC_KEY_BYTES);
  if (!verify(sig, Buffer.concat([state.app_key, state.local.publicKey, shash]), clientKey)) return null;
  const clientCurve = edPublicToCurve(clientKey);
  if (!clientCurve) return null;
  const b_alice = dh(need(state.local.kx_sk, 'kx_sk'), clientCurve);
  if (!b_alice) return null;
  return {
    ...state,
    remote: { ...state.remote, hello, publicKey: Buffer.from(clientKey) },
    a_bob,
    secret2,
    b_alice,
    secret3: sha256(state.app_key, secret, a_bob, b_alice),
  };
}

/** Server accept message: box(sig_B) under secret3 (80 bytes), sig_B = sign_B(N ‖ sig_A ‖ A_pub ‖ sha256(ab)). */
export function serverCreateAccept(state: ShsState): Buffer {
  const signed = Buffer.concat([
    state.app_key,
    need(state.remote.hello, 'remote.hello'),
    need(state.shash, 'shash'),
  ]);
  return box(sign(signed, state.local.secretKey), need(state.secret3, 'secret3'));
}

/** Client: computes Ab, opens the server's accept and checks sig_B. */
export function clientVerifyAccept(state: ShsState, boxedOkay: Buffer): ShsState | null {
  assertLength(boxedOkay, 'server accept', SERVER_ACCEPT_LENGTH);
  const remoteKx = need(state.remote.kx_pk, 'remote.kx_pk');
  const localCurveSk = edSecretToCurve(state.local.secretKey);
  const b_alice = dh(localCurveSk, remoteKx);
  localCurveSk.fill(0);
  if (!b_alice) return null;
  const secret3 = sha256(state.app_key, need(state.secret, 'secret'), need(state.a_bob, 'a_bob'), b_alice);
  const sig = unbox(boxedOkay, secret3);
  if (!sig) return null;
  const signed = Buffer.concat([
    state.app_key,
    need(state.local.hello, 'local.hello'),
    need(state.shash, 'shash'),
  ]);
  if (!verify(sig, signed, need(state.remote.publicKey, 'remote.publicKey'))) return null;
  return { ...state, b_alice, secret3 };
}

/**
 * Derives the session keys and wipes every intermediate secret (forward secrecy: the ephemeral secret key and
 * the DH results are zeroed in place, so a later compromise of this process's memory does not reveal them).
 */
export function clean(state: ShsState): ShsState {
  const secret3 = need(state.secret3, 'secret3');
  const session = sha256(secret3);
  const remoteKey = need(state.remote.publicKey, 'remote.publicKey');
  const result: ShsState = {
    ...state,
    local: { ...state.local, kx_sk: null },
    secret: session,
    shash: null,
    a_bob: null,
    secret2: null,
    b_alice: null,
    secret3: null,
    encryptKey: sha256(session, remoteKey),
    decryptKey: sha256(session, state.local.publicKey),
  };
  for (const b of [state.shash, state.secret, state.a_bob, state.b_alice, state.secret2, secret3]) b?.fill(0);
  state.local.kx_sk?.fill(0);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// The handshake over a socket.

/** What a finished handshake gives each side: one key and starting nonce per direction, and the peer. */
export interface SessionKeys {
  /** The peer's long-term Ed25519 public key (its node id). */
  remotePublicKey: Buffer;
  encryptKey: Buffer;
  encryptNonce: Buffer;
  decryptKey: Buffer;
  decryptNonce: Buffer;
}

export interface ClientHandshakeOptions {
  /** The network key (rpc_secret), 32 bytes. */
  networkKey: Buffer;
  identity: KeyPair;
  /** The server's public key, known in advance (`<id>@host:port`). */
  serverPublicKey: Buffer;
  timeoutMs?: number;
}

export interface ServerHandshakeOptions {
  networkKey: Buffer;
  identity: KeyPair;
  /** Decides whether an authenticated client may connect; refusing drops the connection silently. */
  authorize?: (clientPublicKey: Buffer) => boolean | Promise<boolean>;
  timeoutMs?: number;
}

/** Why a handshake failed. The message names the step, never key material. */
export class HandshakeError extends Error {
  constructor(message: string) {
    super(`secret handshake failed: ${message}`);
    this.name = 'HandshakeError';
  }
}

/** Reads exactly `length` bytes, in paused mode so nothing past the handshake is consumed. */
class ExactReader {
  private waiting: { length: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onReadable = () => this.tryRead();
  private readonly onEnd = () => this.fail(new HandshakeError('peer closed the connection'));
  private readonly onError = (err: Error) =>
    this.fail(new HandshakeError(`connection error (${err.message})`));

  constructor(private readonly socket: Duplex) {
    socket.on('readable', this.onReadable);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  read(length: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { length, resolve, reject };
      this.tryRead();
    });
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiting;
    this.waiting = null;
    w?.reject(err);
  }

  /** Throws if the deadline passed or the peer left while we were not reading (e.g. during authorize). */
  assertAlive(): void {
    if (this.failure) throw this.failure;
  }

  detach(): void {
    this.socket.off('readable', this.onReadable);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
  }

  private tryRead(): void {
    const w = this.waiting;
    if (!w) return;
    const chunk = this.socket.read(w.length) as Buffer | null;
    if (chunk === null) return;
    if (chunk.length !== w.length) return this.fail(new HandshakeError('peer closed the connection'));
    this.waiting = null;
    w.resolve(chunk);
  }
}

async function runHandshake(
  socket: Duplex,
  timeoutMs: number,
  steps: (reader: ExactReader) => Promise<ShsState>,
): Promise<SessionKeys> {
  const reader = new ExactReader(socket);
  const timer = setTimeout(
    () => reader.fail(new HandshakeError(`timed out after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    const state = await steps(reader);
    const remotePublicKey = need(state.remote.publicKey, 'remote.publicKey');
    return {
      remotePublicKey,
      encryptKey: need(state.encryptKey, 'encryptKey'),
      // Each side's first nonce is the first 24 bytes of the *other* side's challenge MAC.
      encryptNonce: Buffer.from(
        need(state.remote.app_mac, 'remote.app_mac').subarray(0, SECRETBOX_NONCE_BYTES),
      ),
      decryptKey: need(state.decryptKey, 'decryptKey'),
      decryptNonce: Buffer.from(state.local.app_mac.subarray(0, SECRETBOX_NONCE_BYTES)),
    };
  } catch (err) {
    // Write nothing more: the peer learns only that the connection closed. Late socket errors (a reset
    // racing the destroy) have nowhere useful to go.
    socket.on('error', () => {});
    socket.destroy();
    throw err instanceof HandshakeError ? err : new HandshakeError((err as Error).message);
  } finally {
    clearTimeout(timer);
    reader.detach();
  }
}

function freshRandom(): Buffer {
  const r = Buffer.alloc(SIGN_SEED_BYTES);
  sodium.randombytes_buf(r);
  return r;
}

function checkNetworkKey(key: Buffer): void {
  if (key.length !== 32) throw new HandshakeError('network key must be 32 bytes');
  // An all-zero key is what a wiped buffer looks like: using it would admit anyone who made the same mistake.
  if (sodium.sodium_is_zero(key)) throw new HandshakeError('network key is all zeros (missing or wiped)');
}

/** Runs the client side over a connected socket; resolves with the session keys, or destroys the socket. */
export function clientHandshake(socket: Duplex, opts: ClientHandshakeOptions): Promise<SessionKeys> {
  checkNetworkKey(opts.networkKey);
  return runHandshake(socket, opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, async (reader) => {
    let state: ShsState | null = initialize({
      app_key: opts.networkKey,
      local: opts.identity,
      remote: { publicKey: opts.serverPublicKey },
      random: freshRandom(),
    });
    socket.write(createChallenge(state));
    state = clientVerifyChallenge(state, await reader.read(CHALLENGE_LENGTH));
    if (!state) throw new HandshakeError('server hello did not verify (wrong network key?)');
    socket.write(clientCreateAuth(state));
    state = clientVerifyAccept(state, await reader.read(SERVER_ACCEPT_LENGTH));
    if (!state) throw new HandshakeError('server accept did not verify (unexpected server identity?)');
    return clean(state);
  });
}

/** Runs the server side over an accepted socket; resolves with the session keys, or destroys the socket. */
export function serverHandshake(socket: Duplex, opts: ServerHandshakeOptions): Promise<SessionKeys> {
  checkNetworkKey(opts.networkKey);
  return runHandshake(socket, opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, async (reader) => {
    let state: ShsState | null = initialize({
      app_key: opts.networkKey,
      local: opts.identity,
      random: freshRandom(),
    });
    state = verifyChallenge(state, await reader.read(CHALLENGE_LENGTH));
    if (!state) throw new HandshakeError('client hello did not verify (wrong network key?)');
    socket.write(createChallenge(state));
    state = serverVerifyAuth(state, await reader.read(CLIENT_AUTH_LENGTH));
    if (!state) throw new HandshakeError('client authentication did not verify');
    const clientKey = need(state.remote.publicKey, 'remote.publicKey');
    if (opts.authorize && !(await opts.authorize(clientKey))) {
      throw new HandshakeError(`client ${clientKey.toString('hex')} is not authorized`);
    }
    reader.assertAlive();
    socket.write(serverCreateAccept(state));
    return clean(state);
  });
}
