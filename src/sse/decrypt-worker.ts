// sse/decrypt-worker: the worker side of decrypt-pool: one RangeOpener per read.
import { RangeOpener } from '../crypto/aead-stream.js';
import { serveSessions } from '../util/worker-pool.js';
import type { DecryptSetup } from './decrypt-pool.js';

serveSessions<RangeOpener>({
  open: (setup) => {
    const { key, options } = setup as DecryptSetup;
    return new RangeOpener(key, options);
  },
  write: (opener, input) => opener.write(input),
  end: (opener) => opener.end(),
});
