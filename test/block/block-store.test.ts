// block: content-addressed blocks — written durably under their SHA-256, read back verified, a flipped byte
// detected, writing the same bytes twice a no-op, and temporary files from a crash cleaned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockIntegrityError, BlockStore } from '../../src/block/block-store.js';
import { S3Error } from '../../src/util/s3-error.js';

async function listed(store: BlockStore): Promise<{ hash: string }[]> {
  const out: { hash: string }[] = [];
  for await (const e of store.listAll()) out.push(e);
  return out;
}

function withStore(fn: (store: BlockStore, dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffre-blocks-'));
    try {
      await fn(new BlockStore(dir), dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'a written block is named by its SHA-256 and reads back identical',
  withStore(async (store) => {
    const data = randomBytes(200_000);
    const hash = await store.write(data);
    assert.equal(hash, createHash('sha256').update(data).digest('hex'));
    assert.ok(existsSync(store.pathOf(hash)));
    assert.ok(await store.has(hash));
    assert.deepEqual(await store.read(hash), data);
    // Stored files are private to the server.
    assert.equal(statSync(store.pathOf(hash)).mode & 0o077, 0);
  }),
);

test(
  'a flipped byte on disk is detected on read',
  withStore(async (store) => {
    const data = randomBytes(4096);
    const hash = await store.write(data);
    const path = store.pathOf(hash);
    const stored = readFileSync(path);
    stored[1234] ^= 0x01;
    writeFileSync(path, stored);
    await assert.rejects(store.read(hash), (err: unknown) => {
      assert.ok(err instanceof BlockIntegrityError);
      assert.equal(err.code, 'InternalError');
      return true;
    });
    // A truncated block fails the same way.
    writeFileSync(path, data.subarray(0, 100));
    await assert.rejects(store.read(hash), BlockIntegrityError);
    // A reader that authenticates the bytes itself (encrypted objects) may skip the check: it gets them as stored.
    assert.deepEqual(await store.read(hash, { verify: false }), data.subarray(0, 100));
  }),
);

test(
  'a missing block is reported as such, with or without the check',
  withStore(async (store) => {
    const hash = await store.write(randomBytes(100));
    rmSync(store.pathOf(hash));
    for (const verify of [true, false]) {
      await assert.rejects(store.read(hash, { verify }), (err: unknown) => {
        assert.ok(err instanceof S3Error);
        assert.match(err.message, /is missing/);
        return true;
      });
    }
  }),
);

test(
  'a missing block is an error, not empty data',
  withStore(async (store) => {
    const hash = BlockStore.hashOf(Buffer.from('never written'));
    await assert.rejects(
      store.read(hash),
      (err: unknown) => err instanceof S3Error && /missing/.test(err.message),
    );
  }),
);

test(
  'writing the same bytes twice is idempotent and leaves no temporary files',
  withStore(async (store, dir) => {
    const data = randomBytes(10_000);
    const [a, b, c] = await Promise.all([
      store.write(data),
      store.write(data),
      store.write(Buffer.from(data)),
    ]);
    assert.equal(a, b);
    assert.equal(b, c);
    assert.equal(await store.write(data), a);
    assert.deepEqual(await store.read(a), data);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
    assert.deepEqual(
      (await listed(store)).map((e) => e.hash),
      [a],
    );
  }),
);

test(
  'remove deletes a block; listAll lists only block files',
  withStore(async (store, dir) => {
    const h1 = await store.write(Buffer.from('one'));
    const h2 = await store.write(Buffer.from('two'));
    writeFileSync(join(dir, 'tmp', 'leftover'), 'x');
    assert.deepEqual((await listed(store)).map((e) => e.hash).sort(), [h1, h2].sort());
    await store.remove(h1);
    assert.equal(await store.has(h1), false);
    await store.remove(h1); // removing twice is fine
    assert.deepEqual(
      (await listed(store)).map((e) => e.hash),
      [h2],
    );
  }),
);

test(
  'temporary files older than the delay are cleaned, newer ones kept',
  withStore(async (store, dir) => {
    const old = join(dir, 'tmp', 'old-partial');
    const fresh = join(dir, 'tmp', 'fresh-partial');
    writeFileSync(old, 'partial');
    writeFileSync(fresh, 'partial');
    const past = new Date(Date.now() - 3600_000);
    utimesSync(old, past, past);
    await store.cleanTemporary(60_000);
    assert.equal(existsSync(old), false);
    assert.equal(existsSync(fresh), true);
  }),
);

test(
  'a write in progress keeps its temporary file even when it is older than the delay',
  withStore(async (store, dir) => {
    // Slow the write down between the temporary file's creation and its rename by cleaning while it runs.
    const data = randomBytes(8 * 1024 * 1024);
    const pending = store.write(data);
    let cleanedDuringWrite = false;
    for (let i = 0; i < 200; i++) {
      const names = readdirSync(join(dir, 'tmp'));
      if (names.length > 0) {
        await store.cleanTemporary(0); // everything counts as old
        cleanedDuringWrite = true;
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    const hash = await pending;
    assert.deepEqual(await store.read(hash), data);
    if (!cleanedDuringWrite) assert.ok(true, 'write finished before a clean could run');
  }),
);

test(
  'writing a stored block again marks it as written now; a removal with unwrittenForMs keeps a copy written since',
  withStore(async (store) => {
    const data = randomBytes(10_000);
    const hash = await store.write(data);
    const path = store.pathOf(hash);
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(path, hourAgo, hourAgo);
    // Unreferenced for ten minutes, written an hour ago: removed.
    await store.remove(hash, { unwrittenForMs: 600_000 });
    assert.equal(existsSync(path), false);

    await store.write(data);
    utimesSync(path, hourAgo, hourAgo);
    // A writer stores the same bytes again (it found the block there and will refer to it)…
    await store.write(data);
    assert.ok(statSync(path).mtimeMs > Date.now() - 60_000, 'the second write marked the block');
    // …so a collector that decided ten minutes ago that nothing refers to it leaves it alone.
    await store.remove(hash, { unwrittenForMs: 600_000 });
    assert.ok(existsSync(path));
    assert.deepEqual(await store.read(hash), data);
    // A plain removal still removes; removing what is gone is no error.
    await store.remove(hash);
    assert.equal(existsSync(path), false);
    await store.remove(hash, { unwrittenForMs: 0 });
  }),
);
