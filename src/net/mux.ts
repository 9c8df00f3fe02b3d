// Multiplexed request/response over one secure channel. Either side may call the other: a call is a stream
// with a JSON head (path + header one way, header back) and an optional byte body in each direction. Bodies
// move as small DATA frames under per-stream credit, so a slow reader stalls only its own stream, and the
// sender interleaves frames of all streams (control frames first, then by priority, round-robin), so a large
// block transfer never holds up a small call. Byte layout and constants: docs/formats-rpc.md.
//
//   const mux = await openMux(channel, { initiator: true, handler });   // after the Secret Handshake
//   const { header, body } = await mux.request('block/get', { hash }, null, { priority: Priority.Bulk });
//
// The handler answers the peer's calls: it receives { path, header, body, signal } and returns
// { header, body? } or throws (the caller gets a RemoteError with the message and optional code).
import { EventEmitter, once } from 'node:events';
import { Readable, type Duplex } from 'node:stream';

// ---- Mux framing constants. DO NOT CHANGE without changing MUX_VERSION_TAG: peers depend on them. ----
/** Sent by both sides right after the handshake; a peer sending anything else is dropped. 16 bytes. */
export const MUX_VERSION_TAG = Buffer.from('coffre-rpc-mux/1', 'ascii');
/** u8 type ‖ u8 flags ‖ u32 stream id ‖ u32 payload length (big-endian). */
export const FRAME_HEADER_LENGTH = 10;
/** Largest payload a receiver accepts in one frame (heads included); anything larger drops the channel. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
/** Body bytes per DATA frame we send: small, so other streams' frames get a turn often. */
export const DATA_FRAME_SIZE = 16 * 1024;
/** Bytes a sender may have in flight per stream and direction before the receiver grants more credit. */
export const INITIAL_WINDOW = 256 * 1024;

export const enum FrameType {
  Request = 1,
  Response = 2,
  Data = 3,
  End = 4,
  Error = 5,
  Cancel = 6,
  Credit = 7,
}
/** Request/Response head flag: a body follows (DATA frames, then END). */
export const FLAG_HAS_BODY = 0x01;

/** Scheduling class of a call's body frames; heads and control frames always go first. */
export enum Priority {
  /** Latency-sensitive small calls (metadata, pings). */
  High = 0,
  Normal = 1,
  /** Large block transfers. */
  Bulk = 2,
}

const VERSION_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_INCOMING_STREAMS = 1024;

/** The peer's protocol violation or the loss of the channel. */
export class MuxError extends Error {
  constructor(message: string) {
    super(`rpc: ${message}`);
    this.name = 'MuxError';
  }
}

/** An error the remote handler reported for a call. */
export class RemoteError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'RemoteError';
  }
}

export type Body = Readable | Buffer;

export interface MuxRequest {
  path: string;
  header: unknown;
  /** The request body, or null when the caller sent none. */
  body: Readable | null;
  /** Aborted when the caller cancels or the channel is lost. */
  signal: AbortSignal;
}

export interface MuxResponse {
  header: unknown;
  body?: Body | null;
}

export interface MuxReply {
  header: unknown;
  body: Readable | null;
}

export type MuxHandler = (req: MuxRequest) => MuxResponse | Promise<MuxResponse>;

export interface MuxOptions {
  /** True on the side that opened the TCP connection: it numbers its calls odd, the other side even. */
  initiator: boolean;
  /** Answers the peer's calls. Without one, every incoming call gets an error. */
  handler?: MuxHandler;
  maxIncomingStreams?: number;
}

export interface RequestOptions {
  priority?: Priority;
  signal?: AbortSignal;
}

interface ErrorPayload {
  message: string;
  code?: string;
}

/** An incoming body: grants the sender more credit as the consumer reads. */
class IncomingBody extends Readable {
  constructor(
    private readonly onConsume: () => void,
    private readonly onAbandon: () => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }
  override _read(): void {
    this.onConsume();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.readableEnded) this.onAbandon();
    cb(err);
  }
}

class MuxStream {
  // Outgoing body
  source: Readable | null = null;
  pending: Buffer | null = null;
  sourceEnded = false;
  credit = INITIAL_WINDOW;
  queued = false;
  sendDone = false;
  // Incoming body
  body: IncomingBody | null = null;
  receiveWindow = INITIAL_WINDOW;
  unacknowledged = 0;
  recvDone = false;
  // A call we made, waiting for its response head
  resolve: ((reply: MuxReply) => void) | null = null;
  reject: ((err: Error) => void) | null = null;
  // A call we answer
  abort: AbortController | null = null;
  detachSource: (() => void) | null = null;

  constructor(
    readonly id: number,
    readonly priority: Priority,
  ) {}
}

/** A frame as one buffer, or (copy = false) as [header, payload] to be written one after the other. */
function frame(type: FrameType, flags: number, id: number, payload?: Buffer): Buffer;
function frame(type: FrameType, flags: number, id: number, payload: Buffer, copy: false): Buffer[];
function frame(type: FrameType, flags: number, id: number, payload?: Buffer, copy = true): Buffer | Buffer[] {
  const len = payload ? payload.length : 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + (copy ? len : 0));
  out[0] = type;
  out[1] = flags;
  out.writeUInt32BE(id, 2);
  out.writeUInt32BE(len, 6);
  if (!payload) return out;
  if (!copy) return [out, payload];
  payload.copy(out, FRAME_HEADER_LENGTH);
  return out;
}

/**
 * Up to `max` bytes from a paused Readable without making it join its buffered chunks (read() with no size
 * concatenates everything buffered: a copy per frame). Null when nothing is buffered (a refill is requested).
 */
function readSome(source: Readable, max: number): Buffer | null {
  const available = source.readableLength;
  const chunk = (available > 0 ? source.read(Math.min(max, available)) : source.read()) as
    Buffer | string | null;
  if (chunk === null) return null;
  return typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
}

function jsonPayload(value: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(value ?? null), 'utf8');
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new MuxError(`header of ${payload.length} bytes exceeds the ${MAX_FRAME_PAYLOAD}-byte frame limit`);
  }
  return payload;
}

function errorPayload(err: unknown): Buffer {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  const body: ErrorPayload = { message: e.message.slice(0, 4096) };
  if (typeof code === 'string') body.code = code;
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/**
 * Ends a body that will receive no more data. The error is emitted only to a consumer that listens for it; an
 * unread body (say, a handler that ignored its request body) must not crash the process with an unhandled
 * 'error'. Readers using pipeline/finished still see a premature close.
 */
function failBody(body: Readable, err: Error): void {
  if (body.destroyed) return;
  body.destroy(body.listenerCount('error') > 0 ? err : undefined);
}

function abortError(): Error {
  const e = new Error('call cancelled');
  e.name = 'AbortError';
  return e;
}

export class Mux extends EventEmitter {
  private readonly streams = new Map<number, MuxStream>();
  private readonly control: Buffer[] = [];
  private readonly runnable: MuxStream[][] = [[], [], []];
  private nextId: number;
  private highestPeerId = 0;
  private incoming = 0;
  private parseBuffer: Buffer | null = null;
  /** Payload bytes still to come of the DATA frame being received, and the stream they go to (null: dropped). */
  private dataRemaining = 0;
  private dataStream: MuxStream | null = null;
  private versionChecked = false;
  private waitingDrain = false;
  private pumping = false;
  private closedError: Error | null = null;
  private readonly versionReady: Promise<void>;
  private versionResolve!: () => void;
  private versionReject!: (err: Error) => void;
  private readonly maxIncoming: number;

  constructor(
    readonly channel: Duplex,
    private readonly opts: MuxOptions,
  ) {
    super();
    this.nextId = opts.initiator ? 1 : 2;
    this.maxIncoming = opts.maxIncomingStreams ?? DEFAULT_MAX_INCOMING_STREAMS;
    this.versionReady = new Promise((resolve, reject) => {
      this.versionResolve = resolve;
      this.versionReject = reject;
    });
    this.versionReady.catch(() => {});
    channel.on('data', (chunk: Buffer) => this.onData(chunk));
    channel.on('end', () => this.shutdown(new MuxError('peer closed the channel'), true));
    channel.on('error', (err: Error) => this.shutdown(err));
    channel.on('close', () => this.shutdown(new MuxError('channel closed')));
    channel.on('drain', () => {
      this.waitingDrain = false;
      this.pump();
    });
    channel.write(MUX_VERSION_TAG);
  }

  /** Resolves once the peer's version tag has been checked. */
  ready(): Promise<void> {
    return this.versionReady;
  }

  /** True once the channel is gone; every call fails. */
  get closed(): boolean {
    return this.closedError !== null;
  }

  /** Why the mux closed (null while open). */
  get closeReason(): Error | null {
    return this.closedError;
  }

  /** Number of calls in flight in either direction. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** Calls `path` on the peer. The reply's body (if any) must be read or destroyed. */
  request(path: string, header: unknown, body?: Body | null, opts: RequestOptions = {}): Promise<MuxReply> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (opts.signal?.aborted) return Promise.reject(abortError());
    const priority = opts.priority ?? Priority.Normal;
    let head: Buffer;
    try {
      head = jsonPayload({ path, header, priority });
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.nextId;
    if (id > 0xffff_ffff) {
      // Ids only grow (the peer refuses a reused one): after 2^31 calls, start a fresh connection.
      this.close();
      return Promise.reject(new MuxError('stream ids exhausted on this connection; reconnect'));
    }
    this.nextId += 2;
    const s = new MuxStream(id, priority);
    this.streams.set(id, s);
    const promise = new Promise<MuxReply>((resolve, reject) => {
      s.resolve = resolve;
      s.reject = reject;
    });
    this.control.push(frame(FrameType.Request, body ? FLAG_HAS_BODY : 0, id, head));
    if (body) this.attachSource(s, body);
    else s.sendDone = true;
    if (opts.signal) {
      const signal = opts.signal;
      const onAbort = () => this.cancel(s, abortError());
      signal.addEventListener('abort', onAbort, { once: true });
      const cleanup = () => signal.removeEventListener('abort', onAbort);
      promise.then((reply) => (reply.body ? reply.body.once('close', cleanup) : cleanup()), cleanup);
    }
    this.pump();
    return promise;
  }

  /** Ends the channel gracefully (box-stream goodbye) once queued frames are written. */
  close(): void {
    this.channel.end();
  }

  destroy(err?: Error): void {
    this.channel.destroy(err);
    this.shutdown(err ?? new MuxError('channel closed'));
  }

  // ---------------------------------------------------------------- sending

  private attachSource(s: MuxStream, body: Body): void {
    if (Buffer.isBuffer(body)) {
      s.pending = body.length > 0 ? body : null;
      s.sourceEnded = true;
      this.enqueue(s);
      return;
    }
    s.source = body;
    const onReadable = () => this.enqueue(s);
    const onEnd = () => {
      s.sourceEnded = true;
      this.enqueue(s);
    };
    const onError = (err: Error) => this.failOutgoing(s, err);
    body.on('readable', onReadable);
    body.on('end', onEnd);
    body.on('error', onError);
    s.detachSource = () => {
      body.off('readable', onReadable);
      body.off('end', onEnd);
      body.off('error', onError);
      s.source = null;
    };
    this.enqueue(s);
  }

  private enqueue(s: MuxStream): void {
    if (s.queued || s.sendDone || !this.streams.has(s.id)) return;
    s.queued = true;
    this.runnable[s.priority].push(s);
    this.pump();
  }

  /** Writes control frames, then body frames by priority and round-robin, until the channel pushes back. */
  private pump(): void {
    // Not re-entrant: enqueue() during the loop must not write frames ahead of the one being written.
    if (this.closedError || this.waitingDrain || this.pumping) return;
    this.pumping = true;
    this.channel.cork();
    try {
      while (true) {
        const ctl = this.control.shift();
        if (ctl) {
          if (!this.channel.write(ctl)) break;
          continue;
        }
        const s = this.runnable[0].shift() ?? this.runnable[1].shift() ?? this.runnable[2].shift();
        if (!s) return;
        s.queued = false;
        const out = this.nextFrame(s);
        if (!out) continue;
        // Round-robin: back of its queue while it may have more to send now.
        if (!s.sendDone && (s.pending === null || s.credit > 0)) this.enqueue(s);
        if (!this.writeAll(out)) break;
      }
      this.waitingDrain = true;
    } finally {
      this.pumping = false;
      process.nextTick(() => this.channel.uncork());
    }
  }

  /** The next DATA or END frame of a stream, or null if it must wait (no data or no credit). */
  private writeAll(out: Buffer | Buffer[]): boolean {
    if (Buffer.isBuffer(out)) return this.channel.write(out);
    let ok = true;
    for (const part of out) ok = this.channel.write(part);
    return ok;
  }

  private nextFrame(s: MuxStream): Buffer | Buffer[] | null {
    if (s.sendDone) return null;
    if (!s.pending && s.source)
      s.pending = readSome(s.source, Math.max(1, Math.min(DATA_FRAME_SIZE, s.credit)));
    if (!s.pending) {
      if (!s.sourceEnded) return null;
      s.sendDone = true;
      s.detachSource?.();
      this.maybeForget(s);
      return frame(FrameType.End, 0, s.id);
    }
    if (s.credit <= 0) return null;
    const n = Math.min(DATA_FRAME_SIZE, s.credit, s.pending.length);
    const out = frame(FrameType.Data, 0, s.id, s.pending.subarray(0, n), false);
    s.pending = n < s.pending.length ? s.pending.subarray(n) : null;
    s.credit -= n;
    return out;
  }

  private failOutgoing(s: MuxStream, err: Error): void {
    if (s.sendDone) return;
    s.sendDone = true;
    s.detachSource?.();
    s.pending = null;
    this.control.push(frame(FrameType.Error, 0, s.id, errorPayload(err)));
    // A call whose request body failed is over for us too.
    this.finishLocally(s, err);
    this.pump();
  }

  /** Local end of a stream after an error we sent: nothing more in either direction. */
  private finishLocally(s: MuxStream, err: Error): void {
    this.forget(s); // first, so that destroying the body below does not send a CANCEL
    s.reject?.(err);
    s.resolve = s.reject = null;
    if (s.body) failBody(s.body, err);
    s.abort?.abort();
  }

  private cancel(s: MuxStream, err: Error): void {
    if (!this.streams.has(s.id)) return;
    this.control.push(frame(FrameType.Cancel, 0, s.id));
    s.sendDone = true;
    s.detachSource?.();
    s.pending = null;
    this.finishLocally(s, err);
    this.pump();
  }

  private grantCredit(s: MuxStream, force: boolean): void {
    if (s.unacknowledged === 0 || !this.streams.has(s.id) || s.recvDone) return;
    if (!force && s.unacknowledged < INITIAL_WINDOW / 4) return;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(s.unacknowledged, 0);
    s.receiveWindow += s.unacknowledged;
    s.unacknowledged = 0;
    this.control.push(frame(FrameType.Credit, 0, s.id, payload));
    this.pump();
  }

  private newIncomingBody(s: MuxStream): IncomingBody {
    return new IncomingBody(
      () => this.grantCredit(s, false),
      () => this.cancel(s, abortError()),
    );
  }

  // ---------------------------------------------------------------- receiving

  private onData(chunk: Buffer): void {
    if (this.closedError) return;
    // The rest of a DATA frame whose payload began in an earlier chunk goes to its body as it comes.
    let pos = this.takeData(chunk, 0);
    if (pos === chunk.length) return;
    if (this.parseBuffer) {
      // Complete the item (version tag, frame header, or a whole non-DATA frame) that straddled the previous
      // chunk, copying only the bytes it needs from this one rather than the whole chunk.
      let pending = this.parseBuffer;
      while (true) {
        const need = this.itemLength(pending);
        if (need < 0) return this.frameTooLarge(pending);
        if (pending.length >= need) break;
        if (pos >= chunk.length) {
          this.parseBuffer = pending;
          return;
        }
        const take = Math.min(need - pending.length, chunk.length - pos);
        pending = Buffer.concat([pending, chunk.subarray(pos, pos + take)]);
        pos += take;
      }
      this.parseBuffer = null;
      if (this.parse(pending) < 0) return;
      // A DATA header completed from the buffer: its payload starts in this chunk.
      pos = this.takeData(chunk, pos);
    }
    const rest = chunk.subarray(pos);
    const consumed = this.parse(rest);
    if (consumed >= 0 && consumed < rest.length) this.parseBuffer = Buffer.from(rest.subarray(consumed));
  }

  /**
   * Length of the item starting at data[0] as far as known: the tag, a frame header, or a whole frame. A DATA
   * frame needs only its header: its payload is passed on in pieces as it arrives, never gathered.
   */
  private itemLength(data: Buffer): number {
    if (!this.versionChecked) return MUX_VERSION_TAG.length;
    if (data.length < FRAME_HEADER_LENGTH) return FRAME_HEADER_LENGTH;
    const len = data.readUInt32BE(6);
    if (len > MAX_FRAME_PAYLOAD) return -1;
    return data[0] === FrameType.Data ? FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH + len;
  }

  private frameTooLarge(data: Buffer): void {
    const len = data.readUInt32BE(6);
    this.protocolError(`frame of ${len} bytes exceeds the ${MAX_FRAME_PAYLOAD}-byte limit`);
  }

  /**
   * Handles every complete item at the start of `data`; returns the bytes used, or -1 once closed. A DATA
   * frame's payload is used as far as `data` holds it; the rest is left owed in dataRemaining.
   */
  private parse(data: Buffer): number {
    let pos = 0;
    try {
      while (this.dataRemaining === 0) {
        const need = this.itemLength(data.subarray(pos));
        if (need < 0) {
          this.frameTooLarge(data.subarray(pos));
          return -1;
        }
        if (data.length - pos < need) break;
        if (!this.versionChecked) {
          if (!data.subarray(pos, pos + need).equals(MUX_VERSION_TAG)) {
            this.protocolError('peer speaks an incompatible rpc version');
            return -1;
          }
          this.versionChecked = true;
          this.versionResolve();
          pos += need;
          continue;
        }
        const type = data[pos] as FrameType;
        const flags = data[pos + 1];
        const id = data.readUInt32BE(pos + 2);
        const len = data.readUInt32BE(pos + 6);
        pos += FRAME_HEADER_LENGTH;
        if (type === FrameType.Data) {
          this.startData(id, len);
          this.dataRemaining = len;
          pos = this.takeData(data, pos);
        } else {
          this.dispatch(type, flags, id, data.subarray(pos, pos + len));
          pos += len;
        }
        if (this.closedError) return -1;
      }
    } catch (err) {
      this.protocolError((err as Error).message);
      return -1;
    }
    return pos;
  }

  private isUsedId(id: number): boolean {
    return this.isPeerId(id) ? id <= this.highestPeerId : id < this.nextId;
  }

  private isPeerId(id: number): boolean {
    return id !== 0 && (id % 2 === 1) !== this.opts.initiator;
  }

  private dispatch(type: FrameType, flags: number, id: number, payload: Buffer): void {
    if (type === FrameType.Request) return this.onRequest(flags, id, payload);
    const s = this.streams.get(id);
    if (!s) {
      // Frames racing a cancel or an error of ours are expected; frames for ids never used are not.
      if (!this.isUsedId(id)) throw new MuxError(`frame for unknown stream ${id}`);
      return;
    }
    switch (type) {
      case FrameType.Response:
        return this.onResponse(s, flags, payload);
      case FrameType.End:
        if (!s.body || s.recvDone) throw new MuxError(`END on stream ${id} without an open body`);
        s.recvDone = true;
        s.body.push(null);
        this.maybeForget(s);
        return;
      case FrameType.Error:
        return this.onRemoteError(s, payload);
      case FrameType.Cancel:
        s.sendDone = true;
        s.detachSource?.();
        s.pending = null;
        return this.finishLocally(s, abortError());
      case FrameType.Credit:
        if (payload.length !== 4) throw new MuxError('CREDIT payload must be 4 bytes');
        s.credit += payload.readUInt32BE(0);
        if (s.credit > 16 * INITIAL_WINDOW) throw new MuxError('credit overflow');
        this.enqueue(s);
        return;
      default:
        throw new MuxError(`unknown frame type ${type as number}`);
    }
  }

  private onRequest(flags: number, id: number, payload: Buffer): void {
    if (!this.isPeerId(id) || this.streams.has(id) || id <= this.highestPeerId) {
      throw new MuxError(`request with invalid stream id ${id}`);
    }
    this.highestPeerId = id;
    const head = JSON.parse(payload.toString('utf8')) as {
      path?: unknown;
      header?: unknown;
      priority?: unknown;
    };
    if (typeof head.path !== 'string') throw new MuxError('request head without a path');
    const p = head.priority;
    const priority = p === Priority.High || p === Priority.Bulk ? p : Priority.Normal;
    const s = new MuxStream(id, priority);
    this.streams.set(id, s);
    if (flags & FLAG_HAS_BODY) s.body = this.newIncomingBody(s);
    else s.recvDone = true;
    if (this.incoming >= this.maxIncoming) {
      return this.failOutgoing(s, new RemoteError('too many concurrent calls', 'BUSY'));
    }
    this.incoming++;
    s.abort = new AbortController();
    const handler = this.opts.handler;
    const req: MuxRequest = { path: head.path, header: head.header, body: s.body, signal: s.abort.signal };
    Promise.resolve()
      .then(() => {
        if (!handler) throw new RemoteError(`no endpoint ${head.path}`, 'NO_SUCH_ENDPOINT');
        return handler(req);
      })
      .then(
        (res) => this.respond(s, res),
        (err: unknown) => this.failOutgoing(s, err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => this.incoming--);
  }

  private respond(s: MuxStream, res: MuxResponse): void {
    if (!this.streams.has(s.id) || s.sendDone) {
      // Cancelled meanwhile: release the body the handler produced.
      if (res.body && !Buffer.isBuffer(res.body)) res.body.destroy();
      return;
    }
    let head: Buffer;
    try {
      head = jsonPayload(res.header);
    } catch (err) {
      return this.failOutgoing(s, err as Error);
    }
    this.control.push(frame(FrameType.Response, res.body ? FLAG_HAS_BODY : 0, s.id, head));
    if (res.body) this.attachSource(s, res.body);
    else {
      s.sendDone = true;
      this.maybeForget(s);
    }
    this.pump();
  }

  private onResponse(s: MuxStream, flags: number, payload: Buffer): void {
    if (!s.resolve) throw new MuxError(`unexpected response on stream ${s.id}`);
    const header = JSON.parse(payload.toString('utf8')) as unknown;
    const resolve = s.resolve;
    s.resolve = s.reject = null;
    if (flags & FLAG_HAS_BODY) s.body = this.newIncomingBody(s);
    else s.recvDone = true;
    resolve({ header, body: s.body });
    this.maybeForget(s);
  }

  /**
   * A DATA frame of `len` bytes begins on stream `id`: the whole frame is charged to the stream's credit now,
   * and its bytes go to the body as they arrive (deliverData). Frames racing a cancel or an error of ours are
   * dropped; frames for ids never used, or beyond the credit granted, are the peer's protocol error.
   */
  private startData(id: number, len: number): void {
    const s = this.streams.get(id);
    this.dataStream = null;
    if (!s) {
      if (!this.isUsedId(id)) throw new MuxError(`frame for unknown stream ${id}`);
      return;
    }
    if (!s.body || s.recvDone) throw new MuxError(`DATA on stream ${s.id} without an open body`);
    if (len > s.receiveWindow) throw new MuxError(`stream ${s.id} exceeded its credit`);
    s.receiveWindow -= len;
    this.dataStream = s;
  }

  /** Passes on as much of the DATA payload still owed as `data` holds from `pos`; returns the position after it. */
  private takeData(data: Buffer, pos: number): number {
    const take = Math.min(this.dataRemaining, data.length - pos);
    this.dataRemaining -= take;
    this.deliverData(data.subarray(pos, pos + take));
    return pos + take;
  }

  private deliverData(piece: Buffer): void {
    const s = this.dataStream;
    if (!s || piece.length === 0) return;
    // Closed meanwhile (cancel, error, channel loss): the rest of the frame is read and dropped.
    if (!s.body || s.body.destroyed || !this.streams.has(s.id)) return;
    s.unacknowledged += piece.length;
    if (s.body.push(piece)) this.grantCredit(s, false);
  }

  private onRemoteError(s: MuxStream, payload: Buffer): void {
    let info: ErrorPayload = { message: 'remote error' };
    try {
      const parsed = JSON.parse(payload.toString('utf8')) as Partial<ErrorPayload>;
      if (typeof parsed.message === 'string') info = { message: parsed.message, code: parsed.code };
    } catch {
      // keep the generic message
    }
    const err = new RemoteError(info.message, typeof info.code === 'string' ? info.code : undefined);
    s.sendDone = true;
    s.detachSource?.();
    s.pending = null;
    this.finishLocally(s, err);
  }

  private maybeForget(s: MuxStream): void {
    if (s.sendDone && s.recvDone && !s.resolve) this.forget(s);
  }

  private forget(s: MuxStream): void {
    this.streams.delete(s.id);
  }

  private protocolError(message: string): void {
    const err = new MuxError(message);
    this.channel.destroy(err);
    this.shutdown(err);
  }

  /** Fails every call in flight. `graceful`: the peer said goodbye, so answer with ours instead of a reset. */
  private shutdown(err: Error, graceful = false): void {
    if (this.closedError) return;
    this.closedError =
      err instanceof MuxError || err instanceof RemoteError ? err : new MuxError(err.message);
    this.versionReject(this.closedError);
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) {
      s.detachSource?.();
      s.reject?.(this.closedError);
      s.resolve = s.reject = null;
      if (s.body && !s.body.readableEnded) failBody(s.body, this.closedError);
      s.abort?.abort();
    }
    this.control.length = 0;
    for (const q of this.runnable) q.length = 0;
    if (graceful) this.channel.end();
    else this.channel.destroy();
    this.emit('close', this.closedError);
  }
}

/** Starts the mux on a fresh secure channel and waits for the peer's version tag (drops on mismatch). */
export async function openMux(channel: Duplex, opts: MuxOptions): Promise<Mux> {
  const mux = new Mux(channel, opts);
  const timer = setTimeout(() => mux.destroy(new MuxError('peer sent no version tag')), VERSION_TIMEOUT_MS);
  try {
    await mux.ready();
  } finally {
    clearTimeout(timer);
  }
  return mux;
}

/** Reads a whole body into memory (for small replies; large ones should be streamed). */
export async function readBody(body: Readable | null, limit = 64 * 1024 * 1024): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let total = 0;
  body.on('data', (c: Buffer) => {
    total += c.length;
    if (total > limit) body.destroy(new MuxError(`body exceeds ${limit} bytes`));
    else parts.push(c);
  });
  await once(body, 'end');
  return Buffer.concat(parts);
}
