// sse/decrypt-pool: decryption of large reads on worker threads (decrypt-worker), so that the thread serving
// requests only moves bytes: a GET of an SSE-C object then costs it about what a plaintext GET does.
//
// Each read is a session on one worker (util/worker-pool throughSession): the worker holds the read's
// RangeOpener, and ciphertext pieces reach it in order, a few ahead of the consumer. The stream key travels as a
// KeyObject, never as a JavaScript buffer.
import type { KeyObject } from 'node:crypto';
import { IntegrityError, type RangeDecryptOptions } from '../crypto/aead-stream.js';
import { lazyWorkerPool, reviveKnown, throughSession } from '../util/worker-pool.js';

/** What a decryption session is opened with. */
export interface DecryptSetup {
  key: KeyObject;
  options: RangeDecryptOptions;
}

const decryptPool = lazyWorkerPool(new URL('./decrypt-worker.js', import.meta.url), () =>
  reviveKnown({ IntegrityError }),
);

/**
 * Decrypts `cipher` (exactly the slice `options.range` names) on a worker, yielding verified plaintext in order.
 * Throws IntegrityError as RangeOpener does. With `cipherOwned`, each piece's whole ArrayBuffer is the
 * caller's to give up and moves to the worker without a copy.
 */
export function decryptOffThread(
  key: KeyObject,
  options: RangeDecryptOptions,
  cipher: AsyncIterable<Buffer>,
  cipherOwned: boolean,
): AsyncGenerator<Buffer> {
  // Small values are copied into the message on their own: cloning a view clones all of its ArrayBuffer.
  const { header, range, context } = options;
  const own = { header: Uint8Array.from(header), range, context: context && Uint8Array.from(context) };
  const setup: DecryptSetup = { key, options: own };
  return throughSession(decryptPool(), setup, cipher, cipherOwned);
}
