// db: ordered range scans under a prefix (element-wise key order, UTF-8 byte order for strings), limits and
// start keys, and transactions that are atomic, see their own writes and survive a reopen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMPTY_POSITION, MetadataDb, type Change, type Key } from '../../src/db/db.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'coffre-db-'));
}

async function withDb(fn: (db: MetadataDb, dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const db = MetadataDb.open(dir);
  try {
    await fn(db, dir);
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const keysOf = (entries: Iterable<{ key: Key }>) => [...entries].map((e) => e.key);

test('range scans return only keys under the prefix, in order', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('objects');
    await db.transaction(() => {
      // Inserted out of order, across three "buckets" whose ids share leading characters.
      for (const [b, k] of [
        ['b2', 'z'],
        ['b1', 'b'],
        ['b', 'x'],
        ['b1', 'a/2'],
        ['b1', 'a/1'],
        ['b1', 'a'],
        ['b10', 'a'],
      ])
        t.put([b!, k!], 1);
    });
    assert.deepEqual(keysOf(t.range({ prefix: ['b1'] })), [
      ['b1', 'a'],
      ['b1', 'a/1'],
      ['b1', 'a/2'],
      ['b1', 'b'],
    ]);
    assert.deepEqual(keysOf(t.range({ prefix: ['b'] })), [['b', 'x']]);
    assert.deepEqual(keysOf(t.range({ prefix: ['nope'] })), []);
    assert.equal(keysOf(t.range({ prefix: [] })).length, 7);
  });
});

test('range scans honour start (inclusive) and limit', async () => {
  await withDb(async (db) => {
    const t = db.table<string>('t');
    await db.transaction(() => {
      for (const k of ['a', 'b', 'c', 'd', 'e']) t.put(['p', k], k);
      t.put(['q', 'a'], 'other');
    });
    assert.deepEqual(
      [...t.range({ prefix: ['p'], start: ['p', 'c'] })].map((e) => e.value),
      ['c', 'd', 'e'],
    );
    assert.deepEqual(
      [...t.range({ prefix: ['p'], start: ['p', 'bb'], limit: 2 })].map((e) => e.value),
      ['c', 'd'],
    );
    assert.deepEqual([...t.range({ prefix: ['p'], limit: 0 })], []);
  });
});

test('string key elements sort by UTF-8 bytes, as S3 listings require', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('t');
    // U+FF5E (3 UTF-8 bytes, EF BD 9E) sorts after U+1F600 (4 bytes, F0 9F 98 80) in UTF-16 code units but
    // before it in UTF-8 byte order.
    const keys = ['\u{1F600}', '\uFF5E', 'a', 'A', 'é', '~'];
    await db.transaction(() => keys.forEach((k, i) => t.put(['b', k], i)));
    const got = keysOf(t.range({ prefix: ['b'] })).map((k) => k[1] as string);
    const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual(got, expected);
  });
});

test('numeric key elements sort numerically (part numbers)', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('parts');
    await db.transaction(() => [10, 2, 1, 10000, 3].forEach((n) => t.put(['upload', n], n)));
    assert.deepEqual(
      [...t.range({ prefix: ['upload'] })].map((e) => e.value),
      [1, 2, 3, 10, 10000],
    );
  });
});

test('a transaction sees its own writes and a throwing one leaves nothing behind', async () => {
  await withDb(async (db) => {
    const t = db.table<{ n: number }>('t');
    await db.transaction(() => t.put(['x'], { n: 1 }));
    const seen = await db.transaction(() => {
      t.put(['x'], { n: 2 });
      t.put(['y'], { n: 3 });
      return t.get(['x'])?.n;
    });
    assert.equal(seen, 2);
    await assert.rejects(
      db.transaction(() => {
        t.put(['x'], { n: 99 });
        t.remove(['y']);
        t.put(['z'], { n: 4 });
        throw new Error('refused');
      }),
      /refused/,
    );
    assert.deepEqual(t.get(['x']), { n: 2 });
    assert.deepEqual(t.get(['y']), { n: 3 });
    assert.equal(t.get(['z']), undefined);
  });
});

test('concurrent read-modify-write transactions do not lose updates', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('counter');
    await Promise.all(
      Array.from({ length: 50 }, () => db.transaction(() => t.put(['c'], (t.get(['c']) ?? 0) + 1))),
    );
    assert.equal(t.get(['c']), 50);
  });
});

test('committed writes survive closing and reopening the store; tables are separate', async () => {
  const dir = tempDir();
  try {
    const db = MetadataDb.open(dir);
    await db.transaction(() => {
      db.table<string>('a').put(['k'], 'in a');
      db.table<string>('b').put(['k'], 'in b');
    });
    await db.close();
    const again = MetadataDb.open(dir);
    assert.equal(again.table<string>('a').get(['k']), 'in a');
    assert.equal(again.table<string>('b').get(['k']), 'in b');
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one-element keys come back from a scan as arrays and match prefixes element-wise', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('refs');
    await db.transaction(() => {
      t.put(['abc'], 1);
      t.put(['abd'], 2);
      t.put([7], 3);
    });
    const entries = [...t.range({ prefix: [] })];
    assert.deepEqual(
      entries.map((e) => e.key),
      [[7], ['abc'], ['abd']],
    );
    // 'abc' starts with the character 'a' but not with the element 'a'.
    assert.deepEqual([...t.range({ prefix: ['a'] })], []);
    assert.deepEqual(keysOf(t.range({ prefix: ['abd'] })), [['abd']]);
  });
});

// ---- the change log, as copies of the tables use it (rpc/metadata-replication) ----

const contents = (db: MetadataDb, name: string) =>
  [...db.table<unknown>(name).range({ prefix: [] })].map((e) => [e.key, e.value]);

async function withTwo(
  fn: (primary: MetadataDb, copy: MetadataDb) => Promise<void>,
  logKeep = 1000,
): Promise<void> {
  const dirs = [tempDir(), tempDir()];
  const primary = MetadataDb.open(dirs[0]!, { logKeep });
  const copy = MetadataDb.open(dirs[1]!, { logKeep });
  try {
    await fn(primary, copy);
  } finally {
    await primary.close();
    await copy.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

test('each writing transaction is one log entry that a copy replays to the same tables and position', async () => {
  await withTwo(async (primary, copy) => {
    const objects = primary.table<{ size: number; inline?: Buffer }>('objects');
    const buckets = primary.table<string>('bucket_names');
    await primary.transaction(() => {
      buckets.put(['photos'], 'b1');
      objects.put(['b1', 'a'], { size: 3, inline: Buffer.from('abc') });
    });
    await primary.transaction(() => objects.get(['b1', 'a'])); // reads only: no entry
    await primary.transaction(() => {
      objects.put(['b1', 'b'], { size: 0 });
      objects.remove(['b1', 'a']);
    });
    await assert.rejects(
      primary.transaction(() => {
        objects.put(['b1', 'c'], { size: 1 });
        throw new Error('refused');
      }),
    );
    assert.equal(primary.position().seq, 2, 'two entries: a read-only and a failed transaction log nothing');
    const entries = primary.entriesAfter(EMPTY_POSITION, 100);
    assert.equal(entries.length, 2);
    assert.deepEqual(
      entries[1]!.changes.map((c) => [c.table, c.key, c.value]),
      [
        ['objects', ['b1', 'b'], { size: 0 }],
        ['objects', ['b1', 'a'], undefined],
      ],
    );
    // Replayed elsewhere; entries that do not follow on from the copy's position are refused whole.
    assert.equal(await copy.applyEntries(EMPTY_POSITION, entries.slice(1)), undefined);
    assert.equal(await copy.applyEntries({ seq: 0, id: 'elsewhere' }, entries), undefined);
    assert.deepEqual(await copy.applyEntries(EMPTY_POSITION, entries), primary.position());
    assert.deepEqual(contents(copy, 'objects'), contents(primary, 'objects'));
    assert.deepEqual(contents(copy, 'bucket_names'), [[['photos'], 'b1']]);
    // The copy keeps the same log, so it could serve it in turn.
    assert.deepEqual(copy.entriesAfter(EMPTY_POSITION, 100), entries);
    assert.ok(primary.canReplayFrom(EMPTY_POSITION));
    assert.ok(!primary.canReplayFrom({ seq: 1, id: 'not-ours' }));
    assert.ok(!primary.canReplayFrom({ seq: 3, id: entries[1]!.id }), 'a position past the head');
  });
});

test('the log keeps its newest entries; a copy behind them is rebuilt from a snapshot taken during writes', async () => {
  await withTwo(async (primary, copy) => {
    const t = primary.table<{ n: number }>('objects');
    for (let i = 0; i < 30; i++) await primary.transaction(() => t.put(['b', `k${i % 12}`], { n: i }));
    assert.equal(primary.position().seq, 30);
    assert.ok(!primary.canReplayFrom(EMPTY_POSITION), 'entries 1..25 are gone');
    assert.equal(primary.entriesAfter(EMPTY_POSITION, 100)[0]!.seq, 26);
    // The copy has data of its own, which the snapshot replaces.
    await copy.transaction(() => copy.table<string>('access_keys').put(['GKown'], 'own'));

    const start = primary.position();
    const batches = primary.snapshot(5);
    await copy.beginResync();
    assert.ok(copy.resyncing());
    let first = true;
    for (const batch of batches) {
      await copy.loadSnapshot(batch);
      if (first) {
        // Writes go on while the snapshot is read: some land in it, all are in the log after `start`.
        first = false;
        for (let i = 0; i < 4; i++) {
          await primary.transaction(() => {
            t.put(['b', `k${i}`], { n: 100 + i });
            t.remove(['b', `k${11 - i}`]);
            t.put(['c', `new${i}`], { n: 200 + i });
          });
        }
      }
    }
    await copy.finishResync(start);
    assert.ok(!copy.resyncing());
    assert.ok(primary.canReplayFrom(start));
    assert.deepEqual(await copy.applyEntries(start, primary.entriesAfter(start, 100)), primary.position());
    assert.deepEqual(contents(copy, 'objects'), contents(primary, 'objects'));
    assert.deepEqual(contents(copy, 'access_keys'), [], "the copy's own data is gone");
  }, 5);
});

test('writes no copy follows skip the log, and move the database to a history no copy can take for complete', async () => {
  await withDb(async (db) => {
    const t = db.table<number>('objects');
    await db.transaction(() => t.put(['a'], 1));
    const logged = db.position();
    assert.equal(logged.seq, 1);
    let logging = false;
    db.logChanges = () => logging;
    await db.transaction(() => t.put(['b'], 2));
    const unlogged = db.position();
    assert.equal(unlogged.seq, 1);
    assert.notEqual(unlogged.id, logged.id);
    assert.deepEqual(db.entriesAfter(EMPTY_POSITION, 10), [], 'the log is emptied');
    assert.ok(!db.canReplayFrom(logged), 'a copy that had entry 1 must take a snapshot');
    assert.ok(!db.canReplayFrom(EMPTY_POSITION));
    await db.transaction(() => t.put(['c'], 3));
    assert.deepEqual(db.position(), unlogged, 'later unlogged writes leave the position as it is');
    // Logged again: a copy loaded from a snapshot at that position follows from there.
    logging = true;
    await db.transaction(() => t.put(['d'], 4));
    assert.equal(db.position().seq, 2);
    assert.ok(db.canReplayFrom(unlogged));
    assert.deepEqual(
      db.entriesAfter(unlogged, 10).map((e) => e.changes.map((c) => c.key)),
      [[['d']]],
    );
  });
});

test('a copy cut off while loading a snapshot still says it is resyncing when reopened', async () => {
  const dirs = [tempDir(), tempDir()];
  try {
    const primary = MetadataDb.open(dirs[0]!);
    const t = primary.table<{ n: number }>('objects');
    for (let i = 0; i < 6; i++) await primary.transaction(() => t.put(['b', `k${i}`], { n: i }));
    const copy = MetadataDb.open(dirs[1]!);
    await copy.beginResync();
    await copy.loadSnapshot(primary.snapshot(2).next().value as Change[]);
    await copy.close(); // the node stops here
    const reopened = MetadataDb.open(dirs[1]!);
    assert.ok(reopened.resyncing(), 'a half-loaded copy is never taken for a whole one');
    assert.equal(
      await reopened.applyEntries(reopened.position(), primary.entriesAfter(EMPTY_POSITION, 10)),
      undefined,
    );
    await reopened.close();
    await primary.close();
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('a database written before it kept a log gets a position no empty copy shares', async () => {
  const dir = tempDir();
  try {
    const old = MetadataDb.open(dir);
    await old.transaction(() => old.table<string>('access_keys').put(['GK1'], 'k'));
    await old.close();
    // As a database from before the log: table data, but no log state.
    const { open } = await import('lmdb');
    const raw = open({ path: dir, maxDbs: 32 });
    await raw.openDB({ name: '_change_log_state' }).clearAsync();
    await raw.openDB({ name: '_change_log', keyEncoding: 'uint32' }).clearAsync();
    await raw.close();
    const upgraded = MetadataDb.open(dir);
    assert.equal(upgraded.position().seq, 0);
    assert.notEqual(upgraded.position().id, '');
    assert.ok(!upgraded.canReplayFrom(EMPTY_POSITION), 'an empty copy must take a snapshot');
    await upgraded.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
