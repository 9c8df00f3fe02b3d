// crypt/seipd-pool: large objects are opened (AES-CFB decryption and the MDC's SHA-1) on a worker thread, so
// that a get spreads over the cores: the main thread reads, parses packets and writes the file, one worker
// opens the SEIPD packet, another hashes the content (util/hash-worker).
import { availableParallelism } from 'node:os';
import { WorkerPool, throughSession } from '../util/worker-pool.js';
import { FormatError } from './packets.js';
import { IntegrityError, WrongKeyError, type SessionKey } from './openpgp.js';

/** What a worker session is opened with: the session key (a copy, zeroed by the worker once used). */
export interface SeipdSetup {
  algo: number;
  key: Uint8Array;
}

/** The errors a SeipdOpener throws, rebuilt by name (looked up late: openpgp.ts imports this module). */
function knownError(name: string): (new (message: string) => Error) | undefined {
  const known: Record<string, new (message: string) => Error> = {
    IntegrityError,
    WrongKeyError,
    FormatError,
  };
  return known[name];
}

let pool: WorkerPool | undefined;

function seipdPool(): WorkerPool {
  pool ??= new WorkerPool(
    new URL('./seipd-worker.js', import.meta.url),
    Math.min(4, Math.max(1, availableParallelism() - 1)),
    (name, message) => {
      const known = knownError(name);
      return known ? new known(message) : Object.assign(new Error(message), { name });
    },
  );
  return pool;
}

/** The plaintext of a SEIPD packet body, opened on a worker; errors as SeipdOpener throws them. */
export async function* openSeipdOffThread(
  session: SessionKey,
  body: AsyncIterable<Buffer>,
): AsyncGenerator<Buffer> {
  const setup: SeipdSetup = { algo: session.algo, key: Uint8Array.from(session.key) };
  try {
    // The body's pieces are views into the packet reader's buffers, which it may still use: they are copied.
    yield* throughSession(seipdPool(), setup, body, false);
  } finally {
    setup.key.fill(0); // the worker got its own copy with the first piece
  }
}
