// model: block reference counts and garbage collection. Overwritten, deleted and aborted data becomes
// collectable; blocks shared by a copy survive deleting one copy; collectGarbage removes unreferenced blocks
// and stray files only after the delay, and never a referenced or in-flight (pinned) block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, segmentHashes } from '../../src/model/model.js';
import { RECORD_VERSION, type ObjectRecord, type Segment } from '../../src/model/types.js';

const BLOCK = 4096;
const GC_DELAY_MS = 300;

async function withModel(fn: (model: Model, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-model-'));
  const model = new Model({
    metadataDir: join(dir, 'meta'),
    dataDir: join(dir, 'data'),
    blockSize: BLOCK,
    inlineThreshold: 256,
    gcDelayMs: GC_DELAY_MS,
  });
  try {
    await fn(model, dir);
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += 1000) yield data.subarray(i, i + 1000);
}

function recordFor(bucketId: string, key: string, segments: Segment[]): ObjectRecord {
  return {
    v: RECORD_VERSION,
    bucketId,
    key,
    versionId: randomBytes(8).toString('hex'),
    size: segments.reduce((n, s) => n + s.plainSize, 0),
    etag: '"x"',
    lastModified: Date.now(),
    headers: {},
    userMeta: {},
    checksums: {},
    segments,
  };
}

async function put(model: Model, key: string, data: Buffer): Promise<ObjectRecord> {
  const segment = await model.writeSegment(chunks(data));
  const record = recordFor('bucket', key, [segment]);
  await model.putObject(record);
  return record;
}

async function readAll(model: Model, record: ObjectRecord): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const s of record.segments) {
    for await (const c of model.readSegment(s, 0, s.storedSize)) parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function present(model: Model, hashes: string[]): Promise<boolean[]> {
  return Promise.all(hashes.map((h) => model.blocks.has(h)));
}

test('an object is split into verified blocks; small ones stay inline', async () => {
  await withModel(async (model) => {
    const data = randomBytes(BLOCK * 3 + 17);
    const rec = await put(model, 'big', data);
    // A short tail (up to 1/16 of a block) joins the last block instead of making a tiny one of its own.
    assert.deepEqual(
      rec.segments[0]!.blocks.map((b) => b.size),
      [BLOCK, BLOCK, BLOCK + 17],
    );
    assert.deepEqual(await readAll(model, rec), data);
    for (const [size, expected] of [
      [BLOCK, [BLOCK]],
      [BLOCK * 2, [BLOCK, BLOCK]],
      [BLOCK * 2 + BLOCK / 16, [BLOCK, BLOCK + BLOCK / 16]],
      [BLOCK * 2 + BLOCK / 16 + 1, [BLOCK, BLOCK, BLOCK / 16 + 1]],
    ] as const) {
      const bytes = randomBytes(size);
      const r = await put(model, `sized-${size}`, bytes);
      assert.deepEqual(
        r.segments[0]!.blocks.map((b) => b.size),
        expected,
        `${size} bytes`,
      );
      assert.deepEqual(await readAll(model, r), bytes);
    }
    const small = await put(model, 'small', Buffer.from('tiny'));
    assert.equal(small.segments[0]!.blocks.length, 0);
    assert.deepEqual(small.segments[0]!.inline, Buffer.from('tiny'));
    assert.deepEqual(await model.readSegment(rec.segments[0]!, BLOCK - 2, BLOCK + 2).toArray(), [
      data.subarray(BLOCK - 2, BLOCK),
      data.subarray(BLOCK, BLOCK + 2),
    ]);
  });
});

test('overwriting an object makes its old blocks collectable after the delay, keeps the new ones', async () => {
  await withModel(async (model) => {
    const first = await put(model, 'k', randomBytes(BLOCK * 3));
    const second = await put(model, 'k', randomBytes(BLOCK * 2));
    const oldHashes = segmentHashes(first.segments);
    const newHashes = segmentHashes(second.segments);
    await model.collectGarbage();
    assert.deepEqual(await present(model, oldHashes), [true, true, true], 'kept until the delay has passed');
    await sleep(GC_DELAY_MS + 50);
    const { removed } = await model.collectGarbage();
    assert.equal(removed, 3);
    assert.deepEqual(await present(model, oldHashes), [false, false, false]);
    assert.deepEqual(await present(model, newHashes), [true, true]);
    assert.equal((await readAll(model, model.getObject('bucket', 'k')!)).length, BLOCK * 2);
  });
});

test('deleting objects (one by one and in a batch) makes their blocks collectable', async () => {
  await withModel(async (model) => {
    const a = await put(model, 'a', randomBytes(BLOCK * 2));
    const b = await put(model, 'b', randomBytes(BLOCK * 2));
    const c = await put(model, 'c', randomBytes(BLOCK * 2));
    await model.deleteObject('bucket', 'a');
    assert.equal(model.getObject('bucket', 'a'), undefined);
    await model.deleteObject('bucket', 'a');
    await model.deleteObjects('bucket', [{ key: 'b' }, { key: 'missing' }]);
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await present(model, segmentHashes(a.segments)), [false, false]);
    assert.deepEqual(await present(model, segmentHashes(b.segments)), [false, false]);
    assert.deepEqual(await present(model, segmentHashes(c.segments)), [true, true]);
  });
});

test('blocks shared by a copy survive deleting one copy, and go when both are gone', async () => {
  await withModel(async (model) => {
    const data = randomBytes(BLOCK * 2 + 500);
    const original = await put(model, 'original', data);
    // A copy refers to the same segments, pinned until its record commits (as CopyObject does).
    model.pins.pin(segmentHashes(original.segments));
    await model.putObject(recordFor('bucket', 'copy', original.segments));
    // The same bytes uploaded again under a third key deduplicate to the same blocks.
    const again = await put(model, 'again', data);
    assert.deepEqual(segmentHashes(again.segments), segmentHashes(original.segments));
    const hashes = segmentHashes(original.segments);

    await model.deleteObject('bucket', 'original');
    await model.deleteObject('bucket', 'again');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await present(model, hashes), [true, true, true]);
    assert.deepEqual(await readAll(model, model.getObject('bucket', 'copy')!), data);

    await model.deleteObject('bucket', 'copy');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await present(model, hashes), [false, false, false]);
  });
});

test('an upload in flight (blocks written, record not committed) is never collected', async () => {
  await withModel(async (model) => {
    const segment = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    const hashes = segmentHashes([segment]);
    for (const h of hashes) {
      const past = new Date(Date.now() - 3600_000);
      utimesSync(model.blocks.pathOf(h), past, past);
    }
    await model.collectGarbage();
    assert.deepEqual(await present(model, hashes), [true, true], 'pinned blocks stay');
    // The operation fails: its blocks are unpinned and become strays.
    model.releaseSegments([segment]);
    await model.collectGarbage();
    assert.deepEqual(await present(model, hashes), [false, false]);
  });
});

test('blocks of an upload that fails, or is refused at commit, go after the delay without a walk of the files', async () => {
  await withModel(async (model) => {
    // Fails mid-stream: the blocks written so far are left to nobody.
    async function* failing(): AsyncGenerator<Buffer> {
      yield randomBytes(BLOCK * 3);
      throw new Error('client went away');
    }
    const before = new Set<string>();
    for await (const { hash } of model.blocks.listAll()) before.add(hash);
    await assert.rejects(model.writeSegment(failing()), /client went away/);
    const left: string[] = [];
    for await (const { hash } of model.blocks.listAll()) if (!before.has(hash)) left.push(hash);
    assert.ok(left.length >= 2, `blocks were written before the failure (${left.length})`);
    // Refused at commit (a failed precondition, say): the caller releases what it wrote.
    const segment = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    const refused = segmentHashes([segment]);
    model.releaseSegments([segment]);
    // A block shared with a committed object is not the refused upload's to lose.
    const kept = await put(model, 'kept', randomBytes(BLOCK * 2));
    const shared = await model.writeSegment(chunks(await readAll(model, kept)));
    model.releaseSegments([shared]);

    await model.collectGarbage({ scanFiles: false });
    assert.ok((await present(model, [...left, ...refused])).every(Boolean), 'kept until the delay');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage({ scanFiles: false });
    assert.deepEqual(
      await present(model, [...left, ...refused]),
      [...left, ...refused].map(() => false),
    );
    assert.ok((await readAll(model, kept)).length === BLOCK * 2, 'the committed object still reads');
  });
});

test('stray block files and temporary files are removed only after the delay', async () => {
  await withModel(async (model, dir) => {
    const stray = await model.blocks.write(randomBytes(1000));
    const tmp = join(dir, 'data', 'tmp', 'crashed-write');
    writeFileSync(tmp, 'partial');
    await model.collectGarbage();
    assert.ok(await model.blocks.has(stray), 'a fresh stray may belong to a write about to commit');
    assert.ok(existsSync(tmp));
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.equal(await model.blocks.has(stray), false);
    assert.equal(existsSync(tmp), false);
  });
});

test('aborting a multipart upload makes its parts collectable; completing keeps only chosen parts', async () => {
  await withModel(async (model) => {
    const base = { bucketId: 'bucket', key: 'mp', versionId: 'v', headers: {}, userMeta: {} };
    const aborted = await model.createUpload(base);
    const partSeg = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    await model.putPart(aborted, {
      v: RECORD_VERSION,
      partNumber: 1,
      etag: '"p1"',
      lastModified: Date.now(),
      segment: partSeg,
      checksums: {},
    });
    await model.abortUpload(aborted);
    assert.throws(() => model.getUpload('bucket', 'mp', aborted.uploadId), /NoSuchUpload|upload/i);

    const completed = await model.createUpload(base);
    const parts = [];
    for (let n = 1; n <= 3; n++) {
      const segment = await model.writeSegment(chunks(randomBytes(BLOCK)));
      const part = {
        v: RECORD_VERSION,
        partNumber: n,
        etag: `"p${n}"`,
        lastModified: Date.now(),
        segment,
        checksums: {},
      };
      await model.putPart(completed, part);
      parts.push(part);
    }
    // Part 2 is uploaded again: the first version of it is dereferenced at once.
    const replaced = parts[1]!;
    const seg2 = await model.writeSegment(chunks(randomBytes(BLOCK)));
    parts[1] = { ...replaced, segment: seg2 };
    await model.putPart(completed, parts[1]);
    // Only parts 1 and 2 go into the object; part 3 is left out.
    const chosen = [parts[0]!, parts[1]];
    await model.completeUpload(
      completed,
      recordFor(
        'bucket',
        'mp',
        chosen.map((p) => p.segment),
      ),
    );

    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await present(model, segmentHashes([partSeg])), [false, false]);
    assert.deepEqual(await present(model, segmentHashes([replaced.segment])), [false]);
    assert.deepEqual(await present(model, segmentHashes([parts[2]!.segment])), [false]);
    assert.deepEqual(await present(model, segmentHashes(chosen.map((p) => p.segment))), [true, true]);
    assert.equal((await readAll(model, model.getObject('bucket', 'mp')!)).length, BLOCK * 2);
  });
});

test('re-uploading content whose blocks await collection keeps it readable', async () => {
  await withModel(async (model) => {
    // Race the collector against a writer that deduplicates onto blocks whose count just reached zero: the
    // new object must never end up pointing at a removed block.
    for (let round = 0; round < 20; round++) {
      const data = randomBytes(BLOCK * 4);
      await put(model, 'victim', data);
      await model.deleteObject('bucket', 'victim');
      await sleep(GC_DELAY_MS + 5);
      const gc = model.collectGarbage();
      const rec = await put(model, `again-${round}`, data);
      await gc;
      await model.collectGarbage();
      assert.deepEqual(await readAll(model, rec), data, `round ${round}`);
    }
  });
});

test('a block repeated inside an object and across objects is counted once per use', async () => {
  await withModel(async (model) => {
    const zeros = Buffer.alloc(BLOCK * 4); // four identical blocks
    const other = Buffer.concat([Buffer.alloc(BLOCK), randomBytes(BLOCK)]); // shares the zero block
    const a = await put(model, 'zeros', zeros);
    const b = await put(model, 'other', other);
    const zeroHash = a.segments[0]!.blocks[0]!.hash;
    assert.equal(new Set(segmentHashes(a.segments)).size, 1);
    assert.equal(segmentHashes(b.segments)[0], zeroHash);

    await model.deleteObject('bucket', 'zeros');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.ok(await model.blocks.has(zeroHash), 'still used by the other object');
    assert.deepEqual(await readAll(model, b), other);

    await model.deleteObject('bucket', 'other');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await present(model, segmentHashes(b.segments)), [false, false]);
  });
});

test('a commit that refers to a block the collector removed is refused until the block is stored again, across a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-model-'));
  const open = () =>
    new Model({
      metadataDir: join(dir, 'meta'),
      dataDir: join(dir, 'data'),
      blockSize: BLOCK,
      inlineThreshold: 256,
      gcDelayMs: 0,
    });
  let model = open();
  try {
    const data = randomBytes(BLOCK * 2);
    const first = await put(model, 'first', data);
    await model.deleteObject('bucket', 'first');
    await model.collectGarbage({ scanFiles: false });
    const [hash] = segmentHashes(first.segments);
    assert.equal(existsSync(model.blocks.pathOf(hash!)), false, 'collected');
    // A record naming those blocks, as a gateway's upload that found them stored before they went would
    // commit it (a gateway's writes pin nothing here), after a restart of this node.
    await model.close();
    model = open();
    await assert.rejects(model.putObject(recordFor('bucket', 'second', first.segments)), {
      code: 'ServiceUnavailable',
    });
    assert.equal(model.getObject('bucket', 'second'), undefined);
    // Stored again (the retried upload), the same record commits and reads back.
    for (const [i, b] of first.segments[0]!.blocks.entries()) {
      await model.blocks.write(data.subarray(i * BLOCK, (i + 1) * BLOCK), b.hash);
    }
    await model.putObject(recordFor('bucket', 'second', first.segments));
    assert.deepEqual(await readAll(model, model.getObject('bucket', 'second')!), data);
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deleting a bucket whose only content is uploads in progress aborts them: a part committed after it is refused and leaves its blocks to the collector', async () => {
  await withModel(async (model) => {
    const bucket = await model.createBucket('uploads-only');
    const base = { bucketId: bucket.id, key: 'mp', versionId: 'v', headers: {}, userMeta: {} };
    const part = (partNumber: number, segment: Segment) => ({
      v: RECORD_VERSION,
      partNumber,
      etag: `"p${partNumber}"`,
      lastModified: Date.now(),
      segment,
      checksums: {},
    });
    const first = await model.createUpload(base);
    const second = await model.createUpload({ ...base, key: 'other' });
    const committed = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    await model.putPart(first, part(1, committed));
    // A part of `second` is being written while the bucket is deleted: its blocks are stored, not committed.
    const late = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    await model.deleteBucket('uploads-only');
    assert.equal(model.bucketByName('uploads-only'), undefined);
    await assert.rejects(model.putPart(second, part(1, late)), /NoSuchUpload|upload/i);
    await assert.rejects(
      model.completeUpload(first, recordFor(bucket.id, 'mp', [committed])),
      /NoSuchUpload|upload/i,
    );
    assert.equal(model.getObject(bucket.id, 'mp'), undefined);
    assert.deepEqual(model.listParts(first.uploadId), []);
    assert.deepEqual(model.listParts(second.uploadId), []);
    assert.deepEqual([...model.listUploads(bucket.id)], []);
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage({ scanFiles: false });
    assert.deepEqual(await present(model, segmentHashes([committed, late])), [false, false, false, false]);
  });
});

test('deleting a bucket that holds an object is refused, and its uploads stay', async () => {
  await withModel(async (model) => {
    const bucket = await model.createBucket('not-empty');
    const upload = await model.createUpload({
      bucketId: bucket.id,
      key: 'mp',
      versionId: 'v',
      headers: {},
      userMeta: {},
    });
    const segment = await model.writeSegment(chunks(randomBytes(BLOCK)));
    await model.putObject(recordFor(bucket.id, 'kept', [segment]));
    await assert.rejects(model.deleteBucket('not-empty'), /not empty/);
    assert.ok(model.bucketByName('not-empty'));
    assert.equal(model.getUpload(bucket.id, 'mp', upload.uploadId).uploadId, upload.uploadId);
  });
});

test('a completed upload is remembered on its object only: a put or copy of the record does not carry it', async () => {
  await withModel(async (model) => {
    const upload = await model.createUpload({
      bucketId: 'bucket',
      key: 'mp',
      versionId: 'v',
      headers: {},
      userMeta: {},
    });
    await model.completeUpload(upload, recordFor('bucket', 'mp', []));
    const done = model.getObject('bucket', 'mp')!;
    assert.equal(done.uploadId, upload.uploadId);
    await model.putObject({ ...done, key: 'copy' });
    assert.equal(model.getObject('bucket', 'copy')!.uploadId, undefined);
    await model.putObject({ ...done });
    assert.equal(model.getObject('bucket', 'mp')!.uploadId, undefined);
  });
});
