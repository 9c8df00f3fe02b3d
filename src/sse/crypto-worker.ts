// sse/crypto-worker: the worker side of crypto-pool: blocks sealed and named, and one RangeOpener per read.
import { blockHash } from '../block/hash.js';
import { RangeOpener, sealRun } from '../crypto/aead-stream.js';
import { isSessionCall, serveCalls, sessionCalls, type Handled } from '../util/worker-pool.js';
import type { DecryptSetup, SealCall, SealReply } from './crypto-pool.js';

const sessions = sessionCalls<RangeOpener>({
  open: (setup) => {
    const { key, options } = setup as DecryptSetup;
    return new RangeOpener(key, options);
  },
  // Each input is the worker's own (read here, or moved here): it is decrypted in place and moves on.
  write: (opener, input) => [opener.writeInPlace(input)],
  end: (opener) => opener.end(),
  outputOwned: true,
});

function seal(call: SealCall): Handled {
  const out = Buffer.from(call.out);
  const plain = new Uint8Array(call.plain.data, call.plain.offset, call.plain.length);
  const length = sealRun(call.key, call.header, plain, call.firstChunk, call.endsStream, out);
  const reply: SealReply = {
    out: call.out,
    length,
    hash: call.named ? blockHash(out.subarray(0, length)) : '',
    plain: call.plain.data,
  };
  return { result: reply, transfer: [call.out, call.plain.data] };
}

serveCalls((message) => (isSessionCall(message) ? sessions(message) : seal(message as unknown as SealCall)));
