// block/pool-worker: the worker side of block/pool. Reads are ordinary asynchronous reads (several overlap on
// the I/O threads) followed by the hash check here; every buffer goes back by transfer.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { serveCalls, transferable, type Handled } from '../util/worker-pool.js';
import { BLOCK_CORRUPT, BLOCK_MISSING, type BlockBytes, type BlockCall } from './pool.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

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
  if (sha256(data) !== hash) {
    throw Object.assign(new Error(`block ${hash} failed its integrity check`), { name: BLOCK_CORRUPT });
  }
  const bytes = transferable(data);
  return { result: { data: bytes, length: data.length } satisfies BlockBytes, transfer: [bytes] };
}

serveCalls((message) => {
  const call = message as unknown as BlockCall;
  if (call.op === 'read') return read(call.path, call.hash);
  const hash = sha256(new Uint8Array(call.data, 0, call.length));
  return { result: { hash, data: call.data, length: call.length }, transfer: [call.data] };
});
