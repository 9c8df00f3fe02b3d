// sse/decrypt-worker: the worker side of decrypt-pool. One RangeOpener per open session; every call on a
// session arrives in order (the pool keeps a session on one worker). A failed session is dropped at once.
import { RangeOpener } from '../crypto/aead-stream.js';
import { serveCalls, transferable, type Handled } from '../util/worker-pool.js';
import type { DecryptCall, Decrypted } from './decrypt-pool.js';

const sessions = new Map<number, RangeOpener>();

function opener(session: number): RangeOpener {
  const found = sessions.get(session);
  if (!found) throw new Error(`decryption session ${session} is not open`);
  return found;
}

serveCalls((message): Handled => {
  const call = message as unknown as DecryptCall;
  try {
    switch (call.op) {
      case 'open':
        sessions.set(call.session, new RangeOpener(call.key, call.options));
        return { result: null };
      case 'data': {
        // One buffer back per call: each ArrayBuffer crossing threads costs the receiving thread's collector,
        // so the chunks are joined here, where the copy costs the serving thread nothing.
        const plain = opener(call.session).write(Buffer.from(call.data, call.offset, call.length));
        const joined = transferable(plain.length === 1 ? plain[0]! : Buffer.concat(plain));
        return { result: { plain: joined } satisfies Decrypted, transfer: [joined] };
      }
      case 'end':
        opener(call.session).end();
        sessions.delete(call.session);
        return { result: null };
      case 'close':
        sessions.delete(call.session);
        return { result: null };
    }
  } catch (err) {
    sessions.delete(call.session);
    throw err;
  }
});
