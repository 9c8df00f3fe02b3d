// A secure channel: a TCP connection after a Secret Handshake, carrying box-stream in both directions, seen
// by its user as a plain Duplex of plaintext bytes. end() sends the box-stream goodbye; the readable side ends
// at the peer's goodbye; anything else (tampering, truncation, a reset) destroys the channel with an error.
//
//   connectSecure(host, port, { networkKey, identity, serverPublicKey })  → Promise<SecureChannel>
//   createSecureServer({ networkKey, identity, authorize? }, (channel) => …) → net.Server (call .listen)
import net from 'node:net';
import { Duplex, finished } from 'node:stream';
import { BoxDecoder, BoxEncoder, BoxStreamError } from './box-stream.js';
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  HandshakeError,
  clientHandshake,
  serverHandshake,
  type KeyPair,
  type SessionKeys,
} from './handshake.js';

export class SecureChannel extends Duplex {
  /** The peer's long-term Ed25519 public key, authenticated by the handshake. */
  readonly remotePublicKey: Buffer;
  private readonly encoder: BoxEncoder;
  private readonly decoder: BoxDecoder;
  private socketEnded = false;
  private pendingWriteCallback: ((err?: Error | null) => void) | null = null;

  constructor(
    readonly socket: net.Socket | Duplex,
    keys: SessionKeys,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 64 * 1024 });
    this.remotePublicKey = keys.remotePublicKey;
    this.encoder = new BoxEncoder(keys.encryptKey, keys.encryptNonce);
    // The socket's reads belong to no one else: messages are opened where they arrived.
    this.decoder = new BoxDecoder(keys.decryptKey, keys.decryptNonce, { inPlace: true });
    keys.encryptKey.fill(0);
    keys.decryptKey.fill(0);

    const fail = (err: Error) => this.destroy(err);
    this.encoder.on('error', fail);
    this.decoder.on('error', fail);
    this.encoder.on('drain', () => {
      const cb = this.pendingWriteCallback;
      this.pendingWriteCallback = null;
      cb?.();
    });
    this.decoder.on('data', (plain: Buffer) => {
      if (!this.push(plain)) this.decoder.pause();
    });
    this.decoder.on('end', () => this.push(null));

    socket.on('error', fail);
    socket.on('end', () => {
      this.socketEnded = true;
    });
    socket.on('close', () => {
      // A FIN lets the decoder decide (goodbye or truncation); a close without one is a lost connection.
      if (!this.socketEnded && !this.decoder.receivedGoodbye) fail(new BoxStreamError('connection lost'));
    });
    this.encoder.pipe(socket);
    socket.pipe(this.decoder);
  }

  /** The peer's node id: 64 hex digits of its public key. */
  get remoteId(): string {
    return this.remotePublicKey.toString('hex');
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.encoder.write(chunk)) callback();
    else this.pendingWriteCallback = callback;
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    let ok = true;
    this.encoder.cork();
    for (const { chunk } of chunks) ok = this.encoder.write(chunk);
    this.encoder.uncork();
    if (ok) callback();
    else this.pendingWriteCallback = callback;
  }

  // Finished only once the goodbye has been handed to the kernel: finishing earlier would let autoDestroy
  // tear the socket down while sealed bytes are still queued.
  override _final(callback: (err?: Error | null) => void): void {
    finished(this.socket, { readable: false }, (err) => callback(err));
    this.encoder.end();
  }

  override _read(): void {
    this.decoder.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.encoder.destroy();
    this.decoder.destroy();
    this.socket.destroy();
    const cb = this.pendingWriteCallback;
    this.pendingWriteCallback = null;
    cb?.(err ?? new BoxStreamError('channel destroyed'));
    callback(err);
  }
}

export interface SecureChannelOptions {
  /** The network key (rpc_secret), 32 bytes. */
  networkKey: Buffer;
  /** This node's long-term key pair. */
  identity: KeyPair;
  /** Deadline for TCP connect + handshake, in ms. */
  timeoutMs?: number;
}

export interface ConnectSecureOptions extends SecureChannelOptions {
  /** The server's public key (its node id), known in advance. */
  serverPublicKey: Buffer;
}

/** Connects to host:port and runs the client handshake. Rejects with HandshakeError or a socket error. */
export function connectSecure(
  host: string,
  port: number,
  opts: ConnectSecureOptions,
): Promise<SecureChannel> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HandshakeError(`connecting to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      clientHandshake(socket, { ...opts, timeoutMs })
        .then((keys) => resolve(new SecureChannel(socket, keys)))
        .catch(reject);
    });
  });
}

export interface SecureServerOptions extends SecureChannelOptions {
  /** Decides whether an authenticated client may connect. */
  authorize?: (clientPublicKey: Buffer) => boolean | Promise<boolean>;
  /** Called when a connection fails its handshake (already dropped); for logging. */
  onHandshakeError?: (err: Error, remoteAddress: string | undefined) => void;
}

/** A TCP server whose connections become SecureChannels once the handshake succeeds. */
export function createSecureServer(
  opts: SecureServerOptions,
  onChannel: (channel: SecureChannel) => void,
): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    const remoteAddress = socket.remoteAddress;
    serverHandshake(socket, opts)
      .then((keys) => onChannel(new SecureChannel(socket, keys)))
      .catch((err: Error) => opts.onHandshakeError?.(err, remoteAddress));
  });
}
