// crypt/seipd-worker: the worker side of seipd-pool: one SeipdOpener per object.
import { serveSessions } from '../util/worker-pool.js';
import { SeipdOpener } from './openpgp.js';
import type { SeipdSetup } from './seipd-pool.js';

serveSessions<SeipdOpener>({
  open: (setup) => {
    const { algo, key } = setup as SeipdSetup;
    const bytes = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    try {
      return new SeipdOpener({ algo, key: bytes });
    } finally {
      bytes.fill(0);
    }
  },
  write: (opener, input) => opener.write(input),
  end: (opener) => opener.end(),
});
