// model: versions. A record written before versioning (format 1) is its key's null version, still read after
// versioning is enabled and after a restart; blocks of non-current versions stay referenced until the
// version is removed, then become collectable; a protected version is refused removal inside the transaction;
// a suspended bucket keeps one null version; listVersions resumes after any version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model, newVersionId, segmentHashes } from '../../src/model/model.js';
import { RECORD_VERSION, s3VersionId, type ObjectRecord, type Segment } from '../../src/model/types.js';

const BLOCK = 4096;
const GC_DELAY_MS = 200;

function open(dir: string): Model {
  return new Model({
    metadataDir: join(dir, 'meta'),
    dataDir: join(dir, 'data'),
    blockSize: BLOCK,
    inlineThreshold: 256,
    gcDelayMs: GC_DELAY_MS,
  });
}

async function* chunks(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

function recordFor(bucketId: string, key: string, segment: Segment, v = RECORD_VERSION): ObjectRecord {
  return {
    v,
    bucketId,
    key,
    versionId: newVersionId(),
    size: segment.plainSize,
    etag: '"x"',
    lastModified: Date.now(),
    headers: {},
    userMeta: {},
    checksums: {},
    segments: [segment],
  };
}

async function put(
  model: Model,
  bucketId: string,
  key: string,
): Promise<{ id?: string; record: ObjectRecord }> {
  const segment = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
  const record = recordFor(bucketId, key, segment);
  return { id: await model.putObject(record), record };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a format 1 record is the null version, before and after versioning is enabled, and after a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-versions-'));
  try {
    let model = open(dir);
    const bucket = await model.createBucket('old');
    // As a node of the previous release wrote it: format 1, no nullVersion field.
    const segment = await model.writeSegment(chunks(randomBytes(BLOCK * 2)));
    const old = recordFor(bucket.id, 'k', segment, 1);
    await model.putObject(old);
    const objects = model.db.table<ObjectRecord>('objects');
    await model.db.transaction(() => objects.put([bucket.id, 'k'], { ...old, v: 1 }));
    assert.equal(s3VersionId(model.getObject(bucket.id, 'k')!), 'null');
    await model.setVersioning(bucket.id, 'Enabled');
    const next = await put(model, bucket.id, 'k');
    assert.match(next.id!, /^[0-9a-f]{32}$/);
    await model.close();
    model = open(dir);
    const versions = [...model.listVersions(bucket.id, '')].map((v) => [s3VersionId(v.record), v.isLatest]);
    assert.deepEqual(versions, [
      [next.id, true],
      ['null', false],
    ]);
    // Its crypto identity (versionId) is the one it was written with.
    assert.equal(model.getVersion(bucket.id, 'k', 'null')!.versionId, old.versionId);
    await model.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('non-current versions keep their blocks until removed; then they are collected', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-versions-'));
  const model = open(dir);
  try {
    const bucket = await model.createBucket('keep');
    await model.setVersioning(bucket.id, 'Enabled');
    const first = await put(model, bucket.id, 'k');
    await put(model, bucket.id, 'k');
    await model.deleteObject(bucket.id, 'k');
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    const hashes = segmentHashes(first.record.segments);
    assert.deepEqual(await Promise.all(hashes.map((h) => model.blocks.has(h))), [true, true]);
    await model.deleteObject(bucket.id, 'k', first.id);
    await sleep(GC_DELAY_MS + 50);
    await model.collectGarbage();
    assert.deepEqual(await Promise.all(hashes.map((h) => model.blocks.has(h))), [false, false]);
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a protected version is refused removal, and the refusal changes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-versions-'));
  const model = open(dir);
  try {
    const bucket = await model.createBucket('locked', undefined, true);
    await model.setObjectLockConfig(bucket.id, { mode: 'COMPLIANCE', days: 1 });
    const v = await put(model, bucket.id, 'k');
    await assert.rejects(model.deleteObject(bucket.id, 'k', v.id, true), /object lock/);
    const outcome = await model.deleteObjects(bucket.id, [{ key: 'k', versionId: v.id }], true);
    assert.equal(outcome[0]!.error?.code, 'AccessDenied');
    assert.equal(model.getVersion(bucket.id, 'k', v.id)?.retention?.mode, 'COMPLIANCE');
    await assert.rejects(model.setObjectLock(bucket.id, 'k', v.id, { retention: null }, true), /object lock/);
    await assert.rejects(model.setVersioning(bucket.id, 'Suspended'), /versioning state cannot be changed/);
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('suspended versioning keeps one null version per key; listVersions resumes after any version', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-versions-'));
  const model = open(dir);
  try {
    const bucket = await model.createBucket('suspend');
    await model.setVersioning(bucket.id, 'Enabled');
    const kept = await put(model, bucket.id, 'a');
    await model.setVersioning(bucket.id, 'Suspended');
    for (let i = 0; i < 3; i++) assert.equal((await put(model, bucket.id, 'a')).id, 'null');
    await put(model, bucket.id, 'b');
    const all = [...model.listVersions(bucket.id, '')].map((v) => `${v.record.key}:${s3VersionId(v.record)}`);
    assert.deepEqual(all, ['a:null', `a:${kept.id}`, 'b:null']);
    for (let i = 0; i < all.length; i++) {
      const [key, versionId] = all[i]!.split(':') as [string, string];
      const rest = [...model.listVersions(bucket.id, '', { key, versionId })].map(
        (v) => `${v.record.key}:${s3VersionId(v.record)}`,
      );
      assert.deepEqual(rest, all.slice(i + 1), `after ${all[i]}`);
    }
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
