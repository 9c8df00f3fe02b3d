// model: buckets, access keys, objects and multipart uploads, and the invariants that tie them to stored
// blocks: every block an object or part refers to holds a reference count, updated in the same transaction
// as the record, and blocks nobody refers to are collected after a delay.
import { randomBytes } from 'node:crypto';
import { BlockStore, type BlockHash, type BlockIo, type BlockReadOptions } from '../block/block-store.js';
import { MetadataDb, type Table } from '../db/db.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { compareUtf8 } from '../util/bytes.js';
import {
  BlockPins,
  writeSegment,
  readSegment,
  segmentSlices,
  type BlockSealer,
  type SegmentWriteOptions,
} from './segments.js';
import type { FileSlice } from '../util/file-slice.js';
import {
  RECORD_VERSION,
  type AccessKeyRecord,
  type BucketRecord,
  type ObjectRecord,
  type PartRecord,
  type Permission,
  type Segment,
  type UploadRecord,
} from './types.js';
import type { Readable } from 'node:stream';

interface RefCount {
  count: number;
  zeroSince?: number;
}

export interface ModelOptions extends SegmentWriteOptions {
  metadataDir: string;
  dataDir: string;
  gcDelayMs: number;
  // Where blocks live when they are spread over a cluster (rpc/). Without it, blocks are local files, and
  // local files that no record refers to are collected too; with it, only the reference counts decide.
  blockIo?: BlockIo;
  // True while every block lives on this node (a node standing alone), even though blockIo is set.
  blocksAreLocal?: () => boolean;
  // False on a node holding only a copy of the tables (rpc/metadata-replication): the metadata node alone
  // collects garbage, and writes them.
  ownsMetadata?: () => boolean;
  // How many change log entries the database keeps for copies to catch up from (db/db.ts).
  logKeep?: number;
}

/** The rights a key may hold on a bucket; the owner right includes read and write. */
export type BucketRight = keyof Permission;

/** Whether a key's permission on a bucket (undefined: none) grants `need`. */
export function grants(permission: Permission | undefined, need: BucketRight): permission is Permission {
  return permission !== undefined && (permission[need] || permission.owner);
}

// Why a bucket name cannot be created: the asking key already owns it, or someone else has it.
export function bucketTakenError(existing: BucketRecord, keyId?: string): S3Error {
  if (keyId && existing.permissions[keyId]?.owner) {
    return new S3Error(
      'BucketAlreadyOwnedByYou',
      409,
      'Your previous request to create the named bucket succeeded and you already own it.',
      { BucketName: existing.name },
    );
  }
  return new S3Error('BucketAlreadyExists', 409, 'The requested bucket name is not available.', {
    BucketName: existing.name,
  });
}

export function segmentHashes(segments: Segment[]): BlockHash[] {
  return segments.flatMap((s) => s.blocks.map((b) => b.hash));
}

export class Model {
  readonly db: MetadataDb;
  readonly blocks: BlockStore;
  // Blocks left to nobody by an operation that did not commit (a failed or refused upload), by when: removed
  // after the delay like blocks whose last reference went, with no walk over the block files to find them.
  private readonly strays = new Map<BlockHash, number>();
  // Writers on other nodes (a gateway's uploads) protect their blocks on their own node only. A commit that
  // refers to a block this collector is removing, or removed after the commit's writer may have found it
  // stored, must not go through as if the block were there: `removing` and the collected_blocks table let
  // commits check (checkCollected).
  /** Blocks whose removal is under way. */
  private readonly removing = new Set<BlockHash>();
  readonly pins = new BlockPins((hash) => {
    if (!this.refs.get([hash])) this.strays.set(hash, Date.now());
  });
  private readonly buckets: Table<BucketRecord>;
  private readonly bucketIds: Table<string>; // name → id
  private readonly keys: Table<AccessKeyRecord>;
  private readonly objects: Table<ObjectRecord>; // [bucketId, key]
  private readonly uploads: Table<UploadRecord>; // [bucketId, key, uploadId]
  private readonly uploadIndex: Table<string[]>; // [uploadId] → [bucketId, key]
  private readonly parts: Table<PartRecord>; // [uploadId, partNumber]
  private readonly refs: Table<RefCount>; // [hash]
  // Blocks this collector removed, with when (ms), kept for COLLECTED_MEMORY_MS: on disk, so that a restart
  // does not forget them while an upload that found one of them stored is still to commit.
  private readonly collected: Table<number>; // [hash]
  private gcTimer?: NodeJS.Timeout;

  constructor(readonly opts: ModelOptions) {
    this.db = MetadataDb.open(opts.metadataDir, { logKeep: opts.logKeep });
    this.blocks = new BlockStore(opts.dataDir);
    this.buckets = this.db.table('buckets');
    this.bucketIds = this.db.table('bucket_names');
    this.keys = this.db.table('access_keys');
    this.objects = this.db.table('objects');
    this.uploads = this.db.table('uploads');
    this.uploadIndex = this.db.table('upload_index');
    this.parts = this.db.table('parts');
    this.refs = this.db.table('block_refs');
    this.collected = this.db.table('collected_blocks');
  }

  async close(): Promise<void> {
    if (this.gcTimer) clearInterval(this.gcTimer);
    await this.db.close();
  }

  // ---- access keys ----

  async createKey(name: string, allowCreateBucket: boolean): Promise<AccessKeyRecord> {
    const record: AccessKeyRecord = {
      v: RECORD_VERSION,
      id: 'GK' + randomBytes(12).toString('hex'),
      name,
      secret: randomBytes(32).toString('hex'),
      createdAt: Date.now(),
      allowCreateBucket,
    };
    await this.db.transaction(() => this.keys.put([record.id], record));
    return record;
  }

  getKey(id: string): AccessKeyRecord | undefined {
    return this.keys.get([id]);
  }

  findKey(idOrName: string): AccessKeyRecord | undefined {
    return this.getKey(idOrName) ?? this.listKeys().find((k) => k.name === idOrName);
  }

  listKeys(): AccessKeyRecord[] {
    return [...this.keys.range({ prefix: [] })].map((e) => e.value);
  }

  async updateKey(
    id: string,
    change: Partial<Pick<AccessKeyRecord, 'name' | 'allowCreateBucket'>>,
  ): Promise<void> {
    await this.db.transaction(() => {
      const k = this.keys.get([id]);
      if (!k) throw new S3Error('NoSuchKey', 404, `no access key ${id}`);
      this.keys.put([id], { ...k, ...change });
    });
  }

  async deleteKey(id: string): Promise<void> {
    await this.db.transaction(() => {
      this.keys.remove([id]);
      for (const { value: b } of this.buckets.range({ prefix: [] })) {
        if (b.permissions[id]) {
          const permissions = { ...b.permissions };
          delete permissions[id];
          this.buckets.put([b.id], { ...b, permissions });
        }
      }
    });
  }

  // ---- buckets ----

  bucketByName(name: string): BucketRecord | undefined {
    const id = this.bucketIds.get([name]);
    return id ? this.buckets.get([id]) : undefined;
  }

  requireBucket(name: string): BucketRecord {
    const b = this.bucketByName(name);
    if (!b) throw S3Errors.noSuchBucket(name);
    return b;
  }

  listBuckets(): BucketRecord[] {
    return [...this.buckets.range({ prefix: [] })].map((e) => e.value).sort((a, b) => cmp(a.name, b.name));
  }

  async createBucket(name: string, owner?: string): Promise<BucketRecord> {
    return this.db.transaction(() => {
      const existing = this.bucketByName(name);
      if (existing) throw bucketTakenError(existing, owner);
      const record: BucketRecord = {
        v: RECORD_VERSION,
        id: randomBytes(16).toString('hex'),
        name,
        createdAt: Date.now(),
        permissions: owner ? { [owner]: { read: true, write: true, owner: true } } : {},
      };
      this.buckets.put([record.id], record);
      this.bucketIds.put([name], record.id);
      return record;
    });
  }

  async updateBucket(id: string, change: (b: BucketRecord) => BucketRecord): Promise<BucketRecord> {
    return this.db.transaction(() => {
      const b = this.buckets.get([id]);
      if (!b) throw new S3Error('NoSuchBucket', 404, 'The specified bucket does not exist');
      const updated = change(b);
      this.buckets.put([id], updated);
      return updated;
    });
  }

  async setPermission(bucketId: string, keyId: string, perm: Permission): Promise<BucketRecord> {
    return this.updateBucket(bucketId, (b) => {
      const permissions = { ...b.permissions };
      if (!perm.read && !perm.write && !perm.owner) delete permissions[keyId];
      else permissions[keyId] = perm;
      return { ...b, permissions };
    });
  }

  // Refused while the bucket holds an object; multipart uploads in progress are aborted with it, as S3 does,
  // in the same transaction: an UploadPart or CompleteMultipartUpload of one of them commits either before
  // (a completed object: BucketNotEmpty) or after (NoSuchUpload, its blocks left to the collector).
  async deleteBucket(name: string): Promise<void> {
    await this.db.transaction(() => {
      const b = this.requireBucket(name);
      for (const _ of this.objects.range({ prefix: [b.id], limit: 1 })) {
        throw new S3Error('BucketNotEmpty', 409, 'The bucket you tried to delete is not empty', {
          BucketName: name,
        });
      }
      const uploads = [...this.uploads.range({ prefix: [b.id] })].map((e) => e.value);
      for (const upload of uploads) this.removeUploadInTxn(upload);
      this.buckets.remove([b.id]);
      this.bucketIds.remove([name]);
    });
  }

  // ---- objects ----

  writeSegment(source: AsyncIterable<Buffer | Uint8Array | string>, sealer?: BlockSealer): Promise<Segment> {
    return writeSegment(this.opts.blockIo ?? this.blocks, this.pins, source, this.opts, sealer);
  }

  releaseSegments(segments: Segment[]): void {
    this.pins.unpin(segmentHashes(segments));
  }

  readSegment(segment: Segment, start: number, end: number, opts?: BlockReadOptions): Readable {
    return readSegment(this.opts.blockIo ?? this.blocks, segment, start, end, opts);
  }

  segmentSlices(segment: Segment, start: number, end: number): AsyncIterable<Buffer | FileSlice> {
    return segmentSlices(this.opts.blockIo ?? this.blocks, segment, start, end);
  }

  getObject(bucketId: string, key: string): ObjectRecord | undefined {
    return this.objects.get([bucketId, key]);
  }

  // Makes `record` the current version of its key, atomically replacing (and dereferencing) the previous one.
  // `precondition` runs inside the transaction, for conditional writes.
  async putObject(
    record: ObjectRecord,
    precondition?: (current: ObjectRecord | undefined) => void,
  ): Promise<void> {
    try {
      const hashes = segmentHashes(record.segments);
      // Only a completed upload's record names it (completeUpload): not a copy of one, which spreads its fields.
      const { uploadId: _notCompleted, ...stored } = record;
      await this.commitReferring(hashes, () => {
        const previous = this.objects.get([record.bucketId, record.key]);
        precondition?.(previous);
        this.addRefs(hashes, 1);
        if (previous) this.addRefs(segmentHashes(previous.segments), -1);
        this.objects.put([record.bucketId, record.key], stored);
      });
    } finally {
      this.releaseSegments(record.segments);
    }
  }

  async deleteObject(bucketId: string, key: string): Promise<ObjectRecord | undefined> {
    return this.db.transaction(() => {
      const previous = this.objects.get([bucketId, key]);
      if (!previous) return undefined;
      this.addRefs(segmentHashes(previous.segments), -1);
      this.objects.remove([bucketId, key]);
      return previous;
    });
  }

  async setObjectTags(
    bucketId: string,
    key: string,
    tags: Record<string, string> | undefined,
  ): Promise<void> {
    await this.db.transaction(() => {
      const record = this.objects.get([bucketId, key]);
      if (!record) throw S3Errors.noSuchKey(key);
      const { tags: _old, ...rest } = record;
      this.objects.put([bucketId, key], tags ? { ...rest, tags } : rest);
    });
  }

  async deleteObjects(bucketId: string, keys: string[]): Promise<void> {
    await this.db.transaction(() => {
      for (const key of keys) {
        const previous = this.objects.get([bucketId, key]);
        if (!previous) continue;
        this.addRefs(segmentHashes(previous.segments), -1);
        this.objects.remove([bucketId, key]);
      }
    });
  }

  // Objects of a bucket in key order, from `startAfter` (exclusive), all starting with `prefix`.
  *listObjects(bucketId: string, prefix: string, startAfter?: string): Generator<ObjectRecord> {
    if (Buffer.byteLength(prefix) > LONGEST_KEY_BYTES) return;
    // A start key is cut to the longest key length (it would not fit in a metadata key otherwise): a
    // prefix of it sorts no later, and keys up to startAfter are skipped below.
    const from = truncateUtf8(startAfter !== undefined && startAfter >= prefix ? startAfter : prefix);
    for (const { value } of this.objects.range({ prefix: [bucketId], start: [bucketId, from] })) {
      if (startAfter !== undefined && compareUtf8(value.key, startAfter) <= 0) continue;
      if (!value.key.startsWith(prefix)) {
        if (value.key > prefix) break;
        continue;
      }
      yield value;
    }
  }

  // ---- multipart uploads ----

  async createUpload(record: Omit<UploadRecord, 'v' | 'uploadId' | 'initiated'>): Promise<UploadRecord> {
    const upload: UploadRecord = {
      ...record,
      v: RECORD_VERSION,
      uploadId: randomBytes(24).toString('base64url'),
      initiated: Date.now(),
    };
    await this.db.transaction(() => {
      this.uploads.put([upload.bucketId, upload.key, upload.uploadId], upload);
      this.uploadIndex.put([upload.uploadId], [upload.bucketId, upload.key]);
    });
    return upload;
  }

  getUpload(bucketId: string, key: string, uploadId: string): UploadRecord {
    const u = this.uploads.get([bucketId, key, uploadId]);
    if (!u) throw S3Errors.noSuchUpload(uploadId);
    return u;
  }

  *listUploads(bucketId: string): Generator<UploadRecord> {
    for (const { value } of this.uploads.range({ prefix: [bucketId] })) yield value;
  }

  async putPart(upload: UploadRecord, part: PartRecord): Promise<void> {
    try {
      const hashes = segmentHashes([part.segment]);
      await this.commitReferring(hashes, () => {
        this.getUpload(upload.bucketId, upload.key, upload.uploadId);
        const previous = this.parts.get([upload.uploadId, part.partNumber]);
        this.addRefs(hashes, 1);
        if (previous) this.addRefs(segmentHashes([previous.segment]), -1);
        this.parts.put([upload.uploadId, part.partNumber], part);
      });
    } finally {
      this.releaseSegments([part.segment]);
    }
  }

  listParts(uploadId: string): PartRecord[] {
    return [...this.parts.range({ prefix: [uploadId] })].map((e) => e.value);
  }

  // Replaces the upload with `record` (whose segments come from the upload's parts) in one transaction. The
  // record keeps the upload's id, so that a client repeating the completion (a lost response) is recognised
  // for as long as this object stays the key's current one.
  async completeUpload(upload: UploadRecord, record: ObjectRecord): Promise<void> {
    await this.db.transaction(() => {
      this.getUpload(upload.bucketId, upload.key, upload.uploadId);
      const previous = this.objects.get([record.bucketId, record.key]);
      this.addRefs(segmentHashes(record.segments), 1);
      if (previous) this.addRefs(segmentHashes(previous.segments), -1);
      this.objects.put([record.bucketId, record.key], { ...record, uploadId: upload.uploadId });
      this.removeUploadInTxn(upload);
    });
  }

  /**
   * Which of `hashes` no record refers to (no reference count at all: blocks whose last reference went are
   * this collector's) and no upload in progress on this node protects. For nodes that sweep blocks left by
   * uploads that failed elsewhere (rpc/orphans).
   */
  unreferencedBlocks(hashes: string[]): string[] {
    if (!Array.isArray(hashes)) return [];
    return hashes.filter(
      (h) =>
        typeof h === 'string' && /^[0-9a-f]{64}$/.test(h) && !this.refs.get([h]) && !this.pins.isPinned(h),
    );
  }

  async abortUpload(upload: UploadRecord): Promise<void> {
    await this.db.transaction(() => {
      this.getUpload(upload.bucketId, upload.key, upload.uploadId);
      this.removeUploadInTxn(upload);
    });
  }

  private removeUploadInTxn(upload: UploadRecord): void {
    for (const { key, value } of this.parts.range({ prefix: [upload.uploadId] })) {
      this.addRefs(segmentHashes([value.segment]), -1);
      this.parts.remove(key);
    }
    this.uploads.remove([upload.bucketId, upload.key, upload.uploadId]);
    this.uploadIndex.remove([upload.uploadId]);
  }

  // ---- block references and garbage collection ----

  private addRefs(hashes: BlockHash[], delta: number): void {
    const now = Date.now();
    for (const hash of hashes) {
      const rc = this.refs.get([hash]) ?? { count: 0 };
      const count = rc.count + delta;
      if (count < 0) throw new Error(`block reference count below zero for ${hash}`);
      this.refs.put([hash], count === 0 ? { count, zeroSince: now } : { count });
    }
  }

  /**
   * Runs `commit`, which adds references to `hashes`, in a transaction, after checkCollected and with
   * assertNotCollectedSince at its start: every commit that refers to new blocks goes through here.
   */
  private async commitReferring(hashes: BlockHash[], commit: () => void): Promise<void> {
    const checkedAt = await this.checkCollected(hashes);
    await this.db.transaction(() => {
      this.assertNotCollectedSince(hashes, checkedAt);
      commit();
    });
  }

  /**
   * Before a commit that refers to `hashes`. A writer on another node that found a block already stored did
   * not store it again; if this collector removed that block since, the commit must not go through as if it
   * were there. A block removed before this check must be stored again now (a writer that found it gone wrote
   * it afresh); one whose removal is under way or ends after this check fails the commit's transaction
   * (assertNotCollectedSince). Either way the upload fails with a 503 the client can retry, instead of an
   * object whose block is gone. Returns the time of the check.
   */
  private async checkCollected(hashes: BlockHash[]): Promise<number> {
    const checkedAt = Date.now();
    const io = this.opts.blockIo ?? this.blocks;
    for (const hash of new Set(hashes)) {
      // A block pinned here is a writer of this node's own, which the collector never removes from under.
      if (this.pins.isPinned(hash)) continue;
      if (this.collected.get([hash]) !== undefined && !(await io.has(hash))) throw blockCollectedError();
    }
    return checkedAt;
  }

  /** Inside a commit's transaction: see checkCollected. */
  private assertNotCollectedSince(hashes: BlockHash[], checkedAt: number): void {
    for (const hash of hashes) {
      if (this.pins.isPinned(hash)) continue;
      if (this.removing.has(hash) || (this.collected.get([hash]) ?? 0) >= checkedAt)
        throw blockCollectedError();
    }
  }

  /**
   * Removes blocks no record refers to once they have been so for the delay: those whose last reference
   * went, and those left by operations that did not commit. With `scanFiles` (the default) it also walks
   * every block file, for blocks left by a crash; that walk costs a readdir per block directory, so the
   * periodic collector does it only now and then (startGarbageCollector).
   */
  async collectGarbage(opts: { scanFiles?: boolean } = {}): Promise<{ removed: number }> {
    if (this.opts.ownsMetadata?.() === false) {
      await this.blocks.cleanTemporary(this.opts.gcDelayMs);
      return { removed: 0 };
    }
    const cutoff = Date.now() - this.opts.gcDelayMs;
    let removed = 0;
    // Checking the pin and unlinking in one synchronous step: a writer that found the file already there (and
    // will refer to it) pins it before it looks, so it either sees the file gone or is seen here. Writers on
    // other nodes (a gateway's uploads) pin on their own node: for them a block's nodes keep any copy written
    // since the block became unreferenced (`since`), which such a writer's store of the block marks.
    const removeUnpinned = async (hash: BlockHash, since: number): Promise<boolean> => {
      if (this.pins.isPinned(hash)) return false;
      if (this.blocksAreLocal()) this.blocks.removeSync(hash);
      else
        await this.opts.blockIo!.remove(hash, { unwrittenForMs: Date.now() - since }).catch(() => undefined);
      return true;
    };
    const doomed: [BlockHash, number][] = [];
    for (const { value, key } of this.refs.range({ prefix: [] })) {
      // (Records written before zeroSince was kept count as unreferenced for exactly the delay.)
      const since = value.zeroSince ?? cutoff;
      if (value.count === 0 && since <= cutoff) doomed.push([key[0] as string, since]);
    }
    // Marked as being removed from before the reference count goes until the removal is done, and as removed
    // after: see checkCollected.
    const collect = async (hash: BlockHash, since: number, unreferenced: () => Promise<boolean>) => {
      this.removing.add(hash);
      try {
        if (!(await unreferenced()) || !(await removeUnpinned(hash, since))) return;
        await this.db.transaction(() => this.collected.put([hash], Date.now()));
        removed++;
      } finally {
        this.removing.delete(hash);
      }
    };
    const forgotten = [...this.collected.range({ prefix: [] })].filter(
      (e) => e.value < Date.now() - COLLECTED_MEMORY_MS,
    );
    if (forgotten.length > 0) {
      await this.db.transaction(() => {
        for (const { key } of forgotten) this.collected.remove(key);
      });
    }
    for (const [hash, since] of doomed) {
      if (this.pins.isPinned(hash)) continue;
      await collect(hash, since, () =>
        this.db.transaction(() => {
          const rc = this.refs.get([hash]);
          if (!rc || rc.count !== 0 || this.pins.isPinned(hash)) return false;
          this.refs.remove([hash]);
          return true;
        }),
      );
    }
    for (const [hash, since] of this.strays) {
      if (since > cutoff) continue;
      this.strays.delete(hash);
      await collect(hash, since, async () => !this.refs.get([hash]));
    }
    if (!this.blocksAreLocal()) {
      await this.blocks.cleanTemporary(this.opts.gcDelayMs);
      return { removed };
    }
    if (opts.scanFiles !== false) {
      const { stat } = await import('node:fs/promises');
      for await (const { hash, path } of this.blocks.listAll()) {
        if (this.refs.get([hash]) || this.pins.isPinned(hash)) continue;
        const st = await stat(path).catch(() => undefined);
        if (st && st.mtimeMs <= cutoff && !this.refs.get([hash]) && (await removeUnpinned(hash, st.mtimeMs)))
          removed++;
      }
    }
    await this.blocks.cleanTemporary(this.opts.gcDelayMs);
    return { removed };
  }

  private blocksAreLocal(): boolean {
    return !this.opts.blockIo || (this.opts.blocksAreLocal?.() ?? false);
  }

  startGarbageCollector(intervalMs: number): void {
    // A pass over a large store can outlast the interval: passes never overlap, nor pile up. The walk over
    // every block file runs on the first pass (what a crash left) and then once per FILE_SCAN_INTERVAL_MS: it
    // costs the serving thread a readdir per block directory, and ran on every pass before (every second in
    // tests and benchmarks, whose figures it disturbed).
    let running = false;
    let lastScan = -Infinity;
    this.gcTimer = setInterval(() => {
      if (running) return;
      running = true;
      const scanFiles = Date.now() - lastScan >= FILE_SCAN_INTERVAL_MS;
      if (scanFiles) lastScan = Date.now();
      this.collectGarbage({ scanFiles })
        .catch(() => undefined)
        .finally(() => (running = false));
    }, intervalMs);
    this.gcTimer.unref();
  }
}

/** How often the collector walks every block file for blocks a crash left behind (besides its first pass). */
const FILE_SCAN_INTERVAL_MS = 60 * 60 * 1000;
/** How long the collector remembers a block it removed, for commits that may refer to it (checkCollected). */
const COLLECTED_MEMORY_MS = 24 * 60 * 60 * 1000;

function blockCollectedError(): S3Error {
  return new S3Error(
    'ServiceUnavailable',
    503,
    'A block of this upload was removed as unreferenced while the upload ran; please retry the upload.',
  );
}

// S3's key length limit, which the API enforces on every stored key.
const LONGEST_KEY_BYTES = 1024;

function truncateUtf8(s: string): string {
  const bytes = Buffer.from(s);
  if (bytes.length <= LONGEST_KEY_BYTES) return s;
  let end = LONGEST_KEY_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return bytes.subarray(0, end).toString();
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
