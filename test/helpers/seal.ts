// Stored bytes of an object sealed as the server seals it: block by block, each on the crypto worker.
import type { ObjectSealer } from '../../src/sse/object-crypto.js';

/** `plain` sealed by `sealer` in blocks of `blockPlain` plaintext bytes (whole chunks), joined. */
export async function sealInBlocks(sealer: ObjectSealer, plain: Buffer, blockPlain: number): Promise<Buffer> {
  const out: Buffer[] = [];
  let at = 0;
  do {
    const end = Math.min(plain.length, at + blockPlain);
    const block = Buffer.from(plain.subarray(at, end)); // moves to the worker: a copy of its own
    const room = Buffer.allocUnsafe(sealer.sealedSize(block.length, at));
    const { sealed } = await sealer.seal(block, room, at, end === plain.length);
    out.push(sealed);
    at = end;
  } while (at < plain.length);
  return Buffer.concat(out);
}
