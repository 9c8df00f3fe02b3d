// util/worker-pool: calls on one lane are answered in order, a thrown error comes back by name, a worker that
// dies fails what it held and is replaced, buffers move by transfer only when that is safe, and a session
// reads the file slices it is given in turn with its bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WorkerPool, throughSession, transferable } from '../../src/util/worker-pool.js';

const POOL_MODULE = new URL('../../src/util/worker-pool.js', import.meta.url).href;

/** A worker script: 'echo' answers after a delay, 'fail' throws a named error, 'die' ends the thread. */
function withPool(size: number, fn: (pool: WorkerPool) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffre-pool-'));
    const script = join(dir, 'worker.mjs');
    writeFileSync(
      script,
      `import { serveCalls } from ${JSON.stringify(POOL_MODULE)};
       import { threadId } from 'node:worker_threads';
       serveCalls(async (m) => {
         if (m.op === 'fail') throw Object.assign(new Error('no such thing'), { name: 'ThingMissing' });
         if (m.op === 'die') process.exit(3);
         await new Promise((r) => setTimeout(r, m.delay ?? 0));
         return { result: { n: m.n, thread: threadId } };
       });`,
    );
    const pool = new WorkerPool(pathToFileURL(script), size, (name, message) =>
      Object.assign(new RangeError(message), { name }),
    );
    try {
      await fn(pool);
    } finally {
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

type Echo = { n: number; thread: number };

test(
  'calls on one lane reach one worker and are answered in the order made',
  withPool(2, async (pool) => {
    const lane = pool.lane();
    const replies = await Promise.all(
      [0, 1, 2, 3].map((n) => pool.call<Echo>({ op: 'echo', n, delay: 0 }, [], lane)),
    );
    assert.deepEqual(
      replies.map((r) => r.n),
      [0, 1, 2, 3],
    );
    assert.equal(new Set(replies.map((r) => r.thread)).size, 1);
  }),
);

test(
  'an error thrown in the worker rejects the call, revived by name',
  withPool(1, async (pool) => {
    await assert.rejects(pool.call({ op: 'fail' }), (err: Error) => {
      assert.ok(err instanceof RangeError);
      assert.equal(err.name, 'ThingMissing');
      assert.equal(err.message, 'no such thing');
      return true;
    });
    assert.equal((await pool.call<Echo>({ op: 'echo', n: 7 })).n, 7);
  }),
);

test(
  'a worker that dies fails the calls it held; the next call gets a new worker',
  withPool(1, async (pool) => {
    const slow = pool.call({ op: 'echo', n: 1, delay: 200 });
    const dies = pool.call({ op: 'die' });
    await assert.rejects(slow, /exited/);
    await assert.rejects(dies, /exited/);
    assert.equal((await pool.call<Echo>({ op: 'echo', n: 2 })).n, 2);
  }),
);

test('transferable moves a whole large buffer and copies a view or a pooled one', () => {
  const whole = Buffer.allocUnsafeSlow(64 * 1024);
  assert.equal(transferable(whole), whole.buffer);
  const view = whole.subarray(10, 20);
  const copied = transferable(view);
  assert.notEqual(copied, whole.buffer);
  assert.deepEqual(new Uint8Array(copied), new Uint8Array(view));
  const pooled = Buffer.from('small');
  assert.notEqual(transferable(pooled), pooled.buffer);
});

test('a session takes bytes and file slices mixed, in order; a slice that cannot be read fails it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-pool-'));
  const script = join(dir, 'worker.mjs');
  // The session's state is everything written so far; each piece comes back as "<offset>:<text>".
  writeFileSync(
    script,
    `import { serveSessions } from ${JSON.stringify(POOL_MODULE)};
     serveSessions({
       open: () => ({ seen: 0 }),
       write: (s, input) => { const out = Buffer.from(s.seen + ':' + input.toString() + ' '); s.seen += input.length; return [out]; },
       end: () => [Buffer.from('end')],
     });`,
  );
  const file = join(dir, 'data');
  writeFileSync(file, 'abcdefghij');
  const pool = new WorkerPool(pathToFileURL(script), 1, (name, message) =>
    Object.assign(new Error(message), { name }),
  );
  const slice = (start: number, end: number, path = file) => ({ path, start, end, missing: 'slice gone' });
  const run = async (pieces: (Buffer | ReturnType<typeof slice>)[]) => {
    const out: Buffer[] = [];
    for await (const b of throughSession(
      pool,
      {},
      (async function* () {
        yield* pieces;
      })(),
      false,
    ))
      out.push(b);
    return Buffer.concat(out).toString();
  };
  try {
    const got = await run([slice(2, 5), Buffer.from('XY'), slice(0, 1), Buffer.from('Z'), slice(8, 10)]);
    assert.equal(got, '0:cde 3:XY 5:a 6:Z 7:ij end');
    for (const bad of [slice(0, 2, join(dir, 'nothing')), slice(8, 20)]) {
      await assert.rejects(run([Buffer.from('ok'), bad, Buffer.from('after')]), (err: Error) => {
        assert.equal(err.name, 'FileMissing');
        assert.equal(err.message, 'slice gone');
        return true;
      });
    }
    assert.equal(await run([slice(0, 3)]), '0:abc end', 'the worker still serves new sessions');
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
