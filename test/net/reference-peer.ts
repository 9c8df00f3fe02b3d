// The reference Secret Handshake and box-stream implementation (npm `secret-handshake`, `pull-box-stream`,
// pull-streams) wrapped in a few promise-returning helpers, so interop tests can pit coffre against it.
// These packages have no type declarations: the small interfaces below describe what the tests use.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

const require = createRequire(import.meta.url);

type Callback<T> = (err: Error | null | true, value?: T) => void;
type Source = (abort: unknown, cb: Callback<Buffer>) => void;
type Sink = (source: Source) => void;
type Through = (source: Source) => Source;
interface PullDuplex {
  source: Source;
  sink: Sink;
}

interface Pull {
  (...streams: unknown[]): unknown;
  values(items: Buffer[]): Source;
  collect(cb: (err: Error | null, items: Buffer[]) => void): Sink;
}

export interface ReferenceKeys {
  publicKey: Buffer;
  secretKey: Buffer;
}

interface ReferenceSecureStream extends PullDuplex {
  remote: Buffer;
}

interface Shs {
  createClient(
    keys: ReferenceKeys,
    appKey: Buffer,
    timeoutMs: number,
  ): (serverKey: Buffer, cb: Callback<ReferenceSecureStream>) => PullDuplex;
  createServer(
    keys: ReferenceKeys,
    authorize: (clientKey: Buffer, cb: (err: Error | null, ok: boolean) => void) => void,
    appKey: Buffer,
    timeoutMs: number,
  ): (cb: Callback<ReferenceSecureStream>) => PullDuplex;
}

const pull = require('pull-stream') as Pull;
const shs = require('secret-handshake') as Shs;
const toPull = require('stream-to-pull-stream') as { duplex(socket: Socket): PullDuplex };
const boxes = require('pull-box-stream') as {
  createBoxStream(key: Buffer, nonce: Buffer): Through;
  createUnboxStream(key: Buffer, nonce: Buffer): Through;
};

/** A connection through the reference implementation: send everything then goodbye, collect until goodbye. */
export interface ReferenceSession {
  remotePublicKey: Buffer;
  /** Sends the buffers then the goodbye. */
  send(chunks: Buffer[]): void;
  /** Everything received up to the peer's goodbye (rejects on any error, including truncation). */
  received: Promise<Buffer>;
}

function session(stream: ReferenceSecureStream): ReferenceSession {
  let sendChunks: (chunks: Buffer[]) => void = () => {};
  const sent = new Promise<Buffer[]>((resolve) => {
    sendChunks = resolve;
  });
  // The sink pulls lazily: hand it a source that waits until send() is called.
  let pending: Buffer[] | null = null;
  const lazySource: Source = (abort, cb) => {
    if (abort) return cb(abort === true ? true : (abort as Error));
    const next = () => {
      if (pending!.length === 0) return cb(true);
      cb(null, pending!.shift());
    };
    if (pending) return next();
    void sent.then((chunks) => {
      pending = [...chunks];
      next();
    });
  };
  pull(lazySource, stream.sink);
  const received = new Promise<Buffer>((resolve, reject) => {
    pull(
      stream.source,
      pull.collect((err, items) => (err ? reject(err) : resolve(Buffer.concat(items)))),
    );
  });
  received.catch(() => {});
  return { remotePublicKey: stream.remote, send: sendChunks, received };
}

/** Runs the reference client over a connected socket. */
export function referenceClient(
  socket: Socket,
  keys: ReferenceKeys,
  networkKey: Buffer,
  serverKey: Buffer,
): Promise<ReferenceSession> {
  return new Promise((resolve, reject) => {
    const connect = shs.createClient(keys, networkKey, 5000);
    const stream = connect(serverKey, (err, secure) => {
      if (err) reject(err === true ? new Error('handshake aborted') : err);
      else resolve(session(secure!));
    });
    pull(stream, toPull.duplex(socket), stream);
  });
}

/** Runs the reference server over an accepted socket. */
export function referenceServer(
  socket: Socket,
  keys: ReferenceKeys,
  networkKey: Buffer,
  authorize: (clientKey: Buffer) => boolean = () => true,
): Promise<ReferenceSession> {
  return new Promise((resolve, reject) => {
    const accept = shs.createServer(keys, (key, cb) => cb(null, authorize(key)), networkKey, 5000);
    const stream = accept((err, secure) => {
      if (err) reject(err === true ? new Error('handshake aborted') : err);
      else resolve(session(secure!));
    });
    pull(stream, toPull.duplex(socket), stream);
  });
}

/** Reference box-stream encoding of `chunks` followed by the goodbye. */
export function referenceBox(key: Buffer, nonce: Buffer, chunks: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pull(
      pull.values(chunks),
      boxes.createBoxStream(key, nonce),
      pull.collect((err, items) => (err ? reject(err) : resolve(Buffer.concat(items)))),
    );
  });
}

/** Reference box-stream decoding (rejects on a bad frame or a missing goodbye). */
export function referenceUnbox(key: Buffer, nonce: Buffer, wire: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pull(
      pull.values(wire),
      boxes.createUnboxStream(key, nonce),
      pull.collect((err, items) => (err ? reject(err) : resolve(Buffer.concat(items)))),
    );
  });
}
