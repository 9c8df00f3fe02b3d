// sse/decrypt-pool: decryption of large reads on worker threads (decrypt-worker), so that the thread serving
// requests only moves bytes: a GET of an SSE-C object then costs it about what a plaintext GET does.
//
// Each read is a session on one worker (its lane): the worker holds the session's RangeOpener, and ciphertext
// pieces are handed to it in order, a few ahead of the consumer, by transfer rather than copy. The stream key
// travels as a KeyObject, never as a JavaScript buffer.
import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { IntegrityError, type RangeDecryptOptions } from '../crypto/aead-stream.js';
import { WorkerPool, moveBytes, type MovedBytes } from '../util/worker-pool.js';

/** Ciphertext pieces in the worker ahead of the consumer, per read (each up to a block, 1 MiB). */
const IN_FLIGHT = 3;

export type DecryptCall =
  | { op: 'open'; session: number; key: KeyObject; options: RangeDecryptOptions }
  | ({ op: 'data'; session: number } & MovedBytes)
  | { op: 'end'; session: number }
  | { op: 'close'; session: number };

/** What a 'data' call returns: the plaintext of the chunks it completed (possibly none). */
export interface Decrypted {
  plain: ArrayBuffer;
}

let pool: WorkerPool | undefined;
let nextSession = 1;

function decryptPool(): WorkerPool {
  pool ??= new WorkerPool(
    new URL('./decrypt-worker.js', import.meta.url),
    Math.min(4, availableParallelism() - 1),
    (name, message) =>
      name === 'IntegrityError' ? new IntegrityError(message) : Object.assign(new Error(message), { name }),
  );
  return pool;
}

function* plainOf(reply: Decrypted): Generator<Buffer> {
  if (reply.plain.byteLength > 0) yield Buffer.from(reply.plain);
}

/**
 * Decrypts `cipher` (exactly the slice `options.range` names) on a worker, yielding verified plaintext in order.
 * Throws IntegrityError as RangeOpener does. With `cipherOwned`, each piece's whole ArrayBuffer is the
 * caller's to give up and moves to the worker without a copy.
 */
export async function* decryptOffThread(
  key: KeyObject,
  options: RangeDecryptOptions,
  cipher: AsyncIterable<Buffer>,
  cipherOwned: boolean,
): AsyncGenerator<Buffer> {
  const workers = decryptPool();
  const lane = workers.lane();
  const session = nextSession++;
  const call = <T>(c: DecryptCall, transfer: ArrayBuffer[] = []) =>
    workers.call<T>(c as unknown as Record<string, unknown>, transfer, lane);
  const waiting: Promise<Decrypted>[] = [];
  let ended = false;
  try {
    // Small values are copied into messages of their own: cloning a view clones all of its ArrayBuffer.
    const { header, range, context } = options;
    const own = { header: Uint8Array.from(header), range, context: context && Uint8Array.from(context) };
    await call({ op: 'open', session, key, options: own });
    for await (const piece of cipher) {
      const moved = moveBytes(piece, cipherOwned);
      const reply = call<Decrypted>({ op: 'data', session, ...moved }, [moved.data]);
      reply.catch(() => undefined); // surfaced when awaited
      waiting.push(reply);
      if (waiting.length >= IN_FLIGHT) yield* plainOf(await waiting.shift()!);
    }
    while (waiting.length > 0) yield* plainOf(await waiting.shift()!);
    await call({ op: 'end', session });
    ended = true;
  } finally {
    if (!ended) call({ op: 'close', session }).catch(() => undefined);
  }
}
