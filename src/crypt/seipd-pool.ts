// crypt/seipd-pool: large objects are opened (AES-CFB decryption and the MDC's SHA-1) on a worker thread, so
// that a get spreads over the cores: the main thread reads, parses packets and writes the file, one worker
// opens the SEIPD packet, another hashes the content (util/hash-worker).
import { lazyWorkerPool, reviveKnown, throughSession } from '../util/worker-pool.js';
import { FormatError } from './packets.js';
import { IntegrityError, WrongKeyError, type SessionKey } from './openpgp.js';

/** What a worker session is opened with: the session key (a copy, zeroed by the worker once used). */
export interface SeipdSetup {
  algo: number;
  key: Uint8Array;
}

// The errors a SeipdOpener throws come back as themselves. The classes are looked up on first use, not at
// load: openpgp.ts imports this module.
const seipdPool = lazyWorkerPool(new URL('./seipd-worker.js', import.meta.url), () =>
  reviveKnown({ IntegrityError, WrongKeyError, FormatError }),
);

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
