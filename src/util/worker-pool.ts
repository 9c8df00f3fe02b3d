// util/worker-pool: CPU work (hashing, decryption) moved off the thread that serves requests. A pool runs a
// fixed number of worker threads of one script and matches replies to calls by id. Buffers travel by transfer
// (no copy) when the caller lists them. A call may name a lane: calls on one lane go to the same worker and are
// handled in the order they were made, which is what a stateful job (one object's decryption) needs.
//
// Workers are unref'd while idle, so a pool never keeps a process alive on its own; a worker that dies fails the
// calls it held and is replaced on the next call.
import { availableParallelism } from 'node:os';
import { Worker, parentPort, type TransferListItem } from 'node:worker_threads';
import { readFileSlice, type FileSlice } from './file-slice.js';

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** A reply as a worker sends it: the call's id and either its result or the error it threw. */
type Reply = { id: number; result: unknown } | { id: number; error: { name: string; message: string } };

/** Rebuilds an error thrown in a worker; `revive` may turn it back into a known class (by name). */
export type ErrorReviver = (name: string, message: string) => Error;

/** An Error carrying the name it had in the worker. */
const namedError: ErrorReviver = (name, message) => Object.assign(new Error(message), { name });

/** A reviver that rebuilds the errors of these classes (by their names) as themselves, others as named Errors. */
export function reviveKnown(known: Record<string, new (message: string) => Error>): ErrorReviver {
  return (name, message) => {
    const cls = Object.hasOwn(known, name) ? known[name] : undefined;
    return cls ? new cls(message) : namedError(name, message);
  };
}

/**
 * A process-wide pool of `script` workers, started on first use. The serving thread keeps a core; the workers
 * share what is left, at least one and at most four.
 */
export function lazyWorkerPool(script: URL, revive?: () => ErrorReviver): () => WorkerPool {
  let pool: WorkerPool | undefined;
  return () => (pool ??= new WorkerPool(script, Math.min(4, availableParallelism() - 1), revive?.()));
}

export class WorkerPool {
  private readonly slots: (Slot | undefined)[];
  private nextId = 1;
  private nextLane = 0;
  private closed = false;

  constructor(
    private readonly script: URL,
    size: number,
    private readonly revive: ErrorReviver = namedError,
  ) {
    this.slots = new Array<Slot | undefined>(Math.max(1, size)).fill(undefined);
  }

  /** A lane for a sequence of calls that must reach one worker in order (spread over the workers). */
  lane(): number {
    return this.nextLane++ % this.slots.length;
  }

  /** Sends `message` (plus an id) to a worker and resolves with what it returns. */
  call<T>(message: Record<string, unknown>, transfer: TransferListItem[] = [], lane?: number): Promise<T> {
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    const slot = this.slotFor(lane ?? this.lane());
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      slot.worker.postMessage({ ...message, id }, transfer);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s?.worker.terminate()));
  }

  private slotFor(index: number): Slot {
    const existing = this.slots[index];
    if (existing) return existing;
    const worker = new Worker(this.script);
    const slot: Slot = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const p = slot.pending.get(reply.id);
      if (!p) return;
      slot.pending.delete(reply.id);
      if (slot.pending.size === 0) worker.unref();
      if ('error' in reply) p.reject(this.revive(reply.error.name, reply.error.message));
      else p.resolve(reply.result);
    });
    const fail = (err: Error) => {
      if (this.slots[index] === slot) this.slots[index] = undefined;
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`worker thread exited (code ${code})`)));
    this.slots[index] = slot;
    return slot;
  }
}

/** What a handler returns: the result, and the buffers to transfer with it rather than copy. */
export interface Handled {
  result: unknown;
  transfer?: TransferListItem[];
}

/**
 * Inside a worker: answers every call with `handle`, which may be async and may throw (the error goes back to
 * the caller). Calls are started in the order they arrive; an async handler lets later ones start meanwhile.
 */
export function serveCalls(handle: (message: Record<string, unknown>) => Handled | Promise<Handled>): void {
  const port = parentPort;
  if (!port) throw new Error('serveCalls must run in a worker thread');
  const send = (id: number, handled: Handled) =>
    port.postMessage({ id, result: handled.result } satisfies Reply, handled.transfer ?? []);
  const fail = (id: number, err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    port.postMessage({ id, error: { name: e.name, message: e.message } } satisfies Reply);
  };
  port.on('message', (message: Record<string, unknown> & { id: number }) => {
    try {
      const handled = handle(message);
      if (handled instanceof Promise)
        handled.then(
          (h) => send(message.id, h),
          (err) => fail(message.id, err),
        );
      else send(message.id, handled);
    } catch (err) {
      fail(message.id, err);
    }
  });
}

/** Bytes on their way to another thread: a region of an ArrayBuffer that is transferred with the message. */
export interface MovedBytes {
  data: ArrayBuffer;
  offset: number;
  length: number;
}

/**
 * A view's bytes ready to move to another thread. When `owned` (the caller holds the only reference to the
 * whole ArrayBuffer under the view, not just the view) and that ArrayBuffer is not from Node's shared pool,
 * it moves as it is; otherwise the view's bytes are copied first.
 */
export function moveBytes(buf: Uint8Array, owned: boolean): MovedBytes {
  if (owned && buf.buffer instanceof ArrayBuffer && buf.buffer.byteLength > Buffer.poolSize) {
    return { data: buf.buffer, offset: buf.byteOffset, length: buf.byteLength };
  }
  return { data: transferable(buf), offset: 0, length: buf.byteLength };
}

/**
 * A buffer's bytes as an ArrayBuffer that may be transferred: its own when the buffer spans all of it and is
 * large enough not to come from Node's shared allocation pool, otherwise a copy. The caller must hold the only
 * reference to `buf` (transfer empties every view of the ArrayBuffer).
 */
export function transferable(buf: Uint8Array): ArrayBuffer {
  const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
  if (whole && buf.buffer instanceof ArrayBuffer && buf.byteLength > Buffer.poolSize) return buf.buffer;
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return copy.buffer;
}

// ---------------------------------------------------------------------------------------------------------
// Streams through a worker: a session is a stateful transform (a decryption) living on one worker. The main
// side hands it the input pieces in order, a few ahead of the consumer, and yields what comes back.

/**
 * Calls of a session, as the worker receives them. The first piece carries the session's setup and the last
 * one says so, so that a one-piece stream (a 1 MiB object) costs one round trip, not three. A piece is bytes,
 * or a file slice the worker reads itself.
 */
export type SessionCall =
  | ({ op: 'data'; session: number; setup?: unknown; last: boolean } & (MovedBytes | { file: FileSlice }))
  | { op: 'close'; session: number };

/** What a session's 'data' call returns: the output of the pieces it completed (possibly empty). */
type SessionOutput = MovedBytes;

/**
 * The worker side of a kind of session. `write` and `end` throw to fail the session. Each input buffer is
 * the session's own (read or received by the worker).
 */
export interface SessionHandler<S> {
  open(setup: unknown): S;
  write(state: S, input: Buffer): Buffer[];
  /** The input has ended: the last output, after any final check. */
  end(state: S): Buffer[] | void;
  /**
   * The whole memory under the buffers write and end return is the session's to give away (output written
   * over its input, say): a lone output buffer then moves to the caller as it is, even if it is a view.
   */
  readonly outputOwned?: boolean;
}

/** Inside a worker: serves sessions with `handler`. A session that fails is dropped at once. */
export function serveSessions<S>(handler: SessionHandler<S>): void {
  serveCalls(sessionCalls(handler));
}

/**
 * The handling of session calls with `handler`, for a worker that serves other calls too (it passes session
 * calls, told apart by isSessionCall, to what this returns).
 */
export function sessionCalls<S>(
  handler: SessionHandler<S>,
): (message: Record<string, unknown>) => Handled | Promise<Handled> {
  // Each session's calls are handled in turn: a piece read from a file may still be on its way when the next
  // piece arrives. `done` is the end of the session's last call.
  const sessions = new Map<number, { state: S; done: Promise<unknown> }>();
  // One buffer back per call: every ArrayBuffer that crosses threads costs the receiving thread's collector,
  // so the pieces are joined here, where the copy costs the serving thread nothing.
  const output = (pieces: Buffer[]): Handled => {
    const joined = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    const moved = moveBytes(joined, pieces.length > 1 || handler.outputOwned === true);
    return { result: moved satisfies SessionOutput, transfer: [moved.data] };
  };
  return (message) => {
    const call = message as unknown as SessionCall;
    if (call.op === 'close') {
      sessions.delete(call.session);
      return { result: null };
    }
    if (call.setup !== undefined)
      sessions.set(call.session, { state: handler.open(call.setup), done: Promise.resolve() });
    const session = sessions.get(call.session);
    if (session === undefined) throw new Error(`session ${call.session} is not open`);
    // A file is read at once, and used once the session's earlier calls are done.
    const input =
      'file' in call ? readFileSlice(call.file) : Buffer.from(call.data, call.offset, call.length);
    if (input instanceof Promise) input.catch(() => undefined); // its failure is this call's, in turn
    const reply = session.done
      .then(() => input)
      .then((bytes): Handled => {
        // A call queued behind one that failed finds its session gone.
        if (sessions.get(call.session) !== session) throw new Error(`session ${call.session} has failed`);
        const pieces = handler.write(session.state, bytes);
        if (call.last) {
          pieces.push(...(handler.end(session.state) ?? []));
          sessions.delete(call.session);
        }
        return output(pieces);
      });
    session.done = reply.catch(() => {
      if (sessions.get(call.session) === session) sessions.delete(call.session);
    });
    return reply;
  };
}

/** Whether a message a worker received is one of a session's calls. */
export function isSessionCall(message: Record<string, unknown>): boolean {
  return message.op === 'data' || message.op === 'close';
}

/** Input pieces in a session's worker ahead of the consumer (each up to about a MiB). */
const SESSION_IN_FLIGHT = 3;
let nextSession = 1;

/**
 * Runs `input` through a new session on one of `pool`'s workers (opened with `setup`), yielding its output in
 * order; an error thrown by the worker's handler is thrown here. With `inputOwned`, each piece's whole
 * ArrayBuffer is the caller's to give up and moves without a copy. File slices are read by the worker.
 */
export async function* throughSession(
  pool: WorkerPool,
  setup: unknown,
  input: AsyncIterable<Buffer | FileSlice>,
  inputOwned: boolean,
): AsyncGenerator<Buffer> {
  const lane = pool.lane();
  const session = nextSession++;
  const call = <T>(c: SessionCall, transfer: ArrayBuffer[] = []) =>
    pool.call<T>(c as unknown as Record<string, unknown>, transfer, lane);
  const waiting: Promise<SessionOutput>[] = [];
  const output = function* (reply: SessionOutput): Generator<Buffer> {
    if (reply.length > 0) yield Buffer.from(reply.data, reply.offset, reply.length);
  };
  let opened = false;
  let ended = false;
  const send = (piece: Buffer | FileSlice, last: boolean) => {
    const first = opened ? {} : { setup };
    opened = true;
    let reply: Promise<SessionOutput>;
    if (Buffer.isBuffer(piece)) {
      const moved = moveBytes(piece, inputOwned);
      reply = call<SessionOutput>({ op: 'data', session, ...first, ...moved, last }, [moved.data]);
    } else {
      reply = call<SessionOutput>({ op: 'data', session, ...first, file: piece, last });
    }
    reply.catch(() => undefined); // surfaced when awaited
    waiting.push(reply);
  };
  try {
    // Each piece is sent once the next one is here (or the input has ended), so the last one can say so.
    let held: Buffer | FileSlice | undefined;
    for await (const piece of input) {
      if (held) send(held, false);
      held = piece;
      if (waiting.length >= SESSION_IN_FLIGHT) yield* output(await waiting.shift()!);
    }
    send(held ?? Buffer.alloc(0), true);
    while (waiting.length > 0) yield* output(await waiting.shift()!);
    ended = true;
  } finally {
    if (opened && !ended) call({ op: 'close', session }).catch(() => undefined);
  }
}
