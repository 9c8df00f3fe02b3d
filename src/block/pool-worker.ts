// block/pool-worker: the worker side of block/pool. Reads are ordinary asynchronous reads (several overlap on
// the I/O threads) followed by the hash check here; every buffer goes back by transfer.
import { readFile } from 'node:fs/promises';
import { moveBytes, serveCalls, type Handled } from '../util/worker-pool.js';
import { blockHash } from './hash.js';
import { BLOCK_CORRUPT, BLOCK_MISSING, type BlockCall } from './pool.js';

async function read(path: string, hash: string): Promise<Handled> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw Object.assign(new Error(`block ${hash} is missing`), { name: BLOCK_MISSING });
    }
    throw err;
  }
  if (blockHash(data) !== hash) {
    throw Object.assign(new Error(`block ${hash} failed its integrity check`), { name: BLOCK_CORRUPT });
  }
  const moved = moveBytes(data, true); // read here, so this thread's alone
  return { result: moved, transfer: [moved.data] };
}

serveCalls((message) => {
  const call = message as unknown as BlockCall;
  if (call.op === 'read') return read(call.path, call.hash);
  const hash = blockHash(new Uint8Array(call.data, call.offset, call.length));
  const { data, offset, length } = call;
  return { result: { hash, data, offset, length }, transfer: [data] };
});
