// block/hash: a block's name, the SHA-256 of its stored bytes in lower-case hex. Kept apart so that worker
// threads which name blocks (block/pool-worker, sse/crypto-worker) load nothing else of the block store.
import { createHash } from 'node:crypto';

export type BlockHash = string; // 64 lower-case hex digits

export function blockHash(data: Uint8Array): BlockHash {
  return createHash('sha256').update(data).digest('hex');
}
