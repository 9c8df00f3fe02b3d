// block/pool: the block store's CPU work on worker threads (pool-worker): checking a block read from disk
// against its name, and naming a block about to be written. SHA-256 over every byte costs the thread serving
// requests about as much as everything else a GET or PUT does, so it happens beside it. Buffers cross by
// transfer, not copy. One pool per process, started on first use (util/worker-pool lazyWorkerPool).
import { lazyWorkerPool, moveBytes, type MovedBytes } from '../util/worker-pool.js';

/** Error names the worker uses for the two read failures BlockStore reports as S3 errors. */
export const BLOCK_MISSING = 'BlockMissing';
export const BLOCK_CORRUPT = 'BlockCorrupt';

export type BlockCall = { op: 'read'; path: string; hash: string } | ({ op: 'hash' } & MovedBytes);

const blockPool = lazyWorkerPool(new URL('./pool-worker.js', import.meta.url));

function call<T>(c: BlockCall, transfer: ArrayBuffer[] = []): Promise<T> {
  return blockPool().call<T>(c as unknown as Record<string, unknown>, transfer);
}

/**
 * Reads the block file at `path` and checks its SHA-256 against `hash` on a worker. Rejects with an Error
 * named BLOCK_MISSING or BLOCK_CORRUPT for those cases. The buffer is the caller's alone.
 */
export async function readVerified(path: string, hash: string): Promise<Buffer> {
  const { data, offset, length } = await call<MovedBytes>({ op: 'read', path, hash });
  return Buffer.from(data, offset, length);
}

/**
 * The SHA-256 (hex) of `block`, computed on a worker. The whole ArrayBuffer under `block` is given up (it moves
 * to the worker and back): use the buffer returned with the hash instead.
 */
export async function hashBlock(block: Buffer): Promise<{ hash: string; block: Buffer }> {
  const moved = moveBytes(block, true);
  const reply = await call<MovedBytes & { hash: string }>({ op: 'hash', ...moved }, [moved.data]);
  return { hash: reply.hash, block: Buffer.from(reply.data, reply.offset, reply.length) };
}
