// util/hash-worker: a digest computed on another thread, so that hashing a large stream runs beside the work
// that produces it (decryption) instead of after it on the same core. Chunks are copied to the worker in order;
// `digest()` resolves once it has hashed them all. `createHasher` picks the worker or an in-place hash.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const h = createHash(workerData.algorithm);
parentPort.on('message', (m) => {
  if (m === null) parentPort.postMessage(h.digest());
  else h.update(m);
});
`;

export class HashWorker {
  private readonly worker: Worker;
  private failure: Error | undefined;

  constructor(algorithm: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algorithm } });
    this.worker.on('error', (err) => (this.failure = err));
    // The worker must not keep the process alive on its own (an abandoned transfer).
    this.worker.unref();
  }

  update(data: Buffer): void {
    this.worker.postMessage(data);
  }

  async digest(): Promise<Buffer> {
    if (this.failure) throw this.failure;
    const result = new Promise<Buffer>((resolve, reject) => {
      this.worker.once('message', (digest: Uint8Array) => resolve(Buffer.from(digest)));
      this.worker.once('error', reject);
    });
    this.worker.postMessage(null);
    try {
      return await result;
    } finally {
      await this.worker.terminate();
    }
  }

  async abandon(): Promise<void> {
    await this.worker.terminate();
  }
}

/** A running digest, on a worker thread or in place. */
export interface Hasher {
  update(data: Buffer): void;
  digest(): Promise<Buffer>;
  /** Drops the digest (and its thread, if any) without finishing it. */
  abandon(): Promise<void>;
}

/** A hasher for `algorithm`: on a worker when `offThread` (worth it for some MiB of data), else in place. */
export function createHasher(algorithm: string, offThread: boolean): Hasher {
  if (offThread) return new HashWorker(algorithm);
  const h = createHash(algorithm);
  return {
    update: (data) => void h.update(data),
    digest: async () => h.digest(),
    abandon: async () => undefined,
  };
}
