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
  isProtected,
  s3VersionId,
  type AccessKeyRecord,
  type BucketRecord,
  type DefaultRetention,
  type ObjectRecord,
  type PartRecord,
  type Permission,
  type Retention,
  type Segment,
  type UploadRecord,
  type VersioningState,
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

/** A new version's id: it also names the version for encryption (sse/ derives per-object keys from it). */
export function newVersionId(): string {
  return randomBytes(16).toString('hex');
}

/** What a delete did: the version it made (a delete marker) or removed, as S3 reports it. */
export interface DeleteOutcome {
  versionId?: string;
  deleteMarker?: boolean;
}

/** One entry of a DeleteObjects batch, and what became of it. */
export interface DeleteEntry {
  key: string;
  versionId?: string;
}
export interface DeleteEntryOutcome extends DeleteEntry, DeleteOutcome {
  error?: { code: string; message: string };
}

/** A change of a version's object lock (PutObjectRetention, PutObjectLegalHold): null removes a retention. */
export interface LockChange {
  retention?: Retention | null;
  legalHold?: boolean;
}

/** A version as ListObjectVersions shows it. */
export interface VersionEntry {
  record: ObjectRecord;
  isLatest: boolean;
}

/** Where a listing of versions resumes: after `versionId` of `key`, or after all of `key`'s versions. */
export interface VersionCursor {
  key: string;
  versionId?: string;
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
  private readonly objects: Table<ObjectRecord>; // [bucketId, key]: the current version (maybe a delete marker)
  // Versions no longer current, newest first: ranks count down from TOP_RANK as versions are pushed.
  private readonly versions: Table<ObjectRecord>; // [bucketId, key, rank]
  private readonly versionRanks: Table<number>; // [bucketId, key, S3 version id] → rank in `versions`
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
    this.versions = this.db.table('object_versions');
    this.versionRanks = this.db.table('object_version_ranks');
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

  // A bucket created with object lock has versioning enabled for good (S3 allows no suspending it).
  async createBucket(name: string, owner?: string, objectLock = false): Promise<BucketRecord> {
    return this.db.transaction(() => {
      const existing = this.bucketByName(name);
      if (existing) throw bucketTakenError(existing, owner);
      const record: BucketRecord = {
        v: RECORD_VERSION,
        id: randomBytes(16).toString('hex'),
        name,
        createdAt: Date.now(),
        permissions: owner ? { [owner]: { read: true, write: true, owner: true } } : {},
        ...(objectLock ? { versioning: 'Enabled' as const, objectLock: { enabled: true as const } } : {}),
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

  async setVersioning(bucketId: string, state: VersioningState): Promise<BucketRecord> {
    return this.updateBucket(bucketId, (b) => {
      if (state === 'Suspended' && b.objectLock)
        throw new S3Error(
          'InvalidBucketState',
          409,
          'An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.',
        );
      return { ...b, versioning: state };
    });
  }

  // Enables object lock (for good) with an optional default retention; the bucket must be versioned.
  async setObjectLockConfig(bucketId: string, rule: DefaultRetention | undefined): Promise<BucketRecord> {
    return this.updateBucket(bucketId, (b) => {
      if (b.versioning !== 'Enabled')
        throw new S3Error(
          'InvalidBucketState',
          409,
          "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
        );
      return { ...b, objectLock: rule ? { enabled: true, rule } : { enabled: true } };
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

  /** The current version of a key, unless it is a delete marker (the key then looks deleted). */
  getObject(bucketId: string, key: string): ObjectRecord | undefined {
    const current = this.objects.get([bucketId, key]);
    return current?.deleteMarker ? undefined : current;
  }

  /**
   * A version of a key by its S3 version id ("null" for the null version), delete markers included; without
   * an id, the current version (which may be a delete marker).
   */
  getVersion(bucketId: string, key: string, versionId?: string): ObjectRecord | undefined {
    const current = this.objects.get([bucketId, key]);
    if (versionId === undefined || (current && s3VersionId(current) === versionId)) return current;
    const rank = this.versionRanks.get([bucketId, key, versionId]);
    return rank === undefined ? undefined : this.versions.get([bucketId, key, rank]);
  }

  /**
   * Makes `record` the current version of its key, as the bucket's versioning says: unversioned, it replaces
   * (and dereferences) the previous one; enabled, the previous one stays as a non-current version; suspended,
   * the new one is the null version and replaces the previous null version. `precondition` runs inside the
   * transaction, for conditional writes. Returns the S3 version id of the new version, or undefined when the
   * bucket is not versioned.
   */
  async putObject(
    record: ObjectRecord,
    precondition?: (current: ObjectRecord | undefined) => void,
  ): Promise<string | undefined> {
    try {
      const hashes = segmentHashes(record.segments);
      // Only a completed upload's record names it (completeUpload): not a copy of one, which spreads its fields.
      // Nor is a delete marker written as an object.
      const { uploadId: _notCompleted, deleteMarker: _notMarker, ...stored } = record;
      let versionId: string | undefined;
      await this.commitReferring(hashes, () => {
        precondition?.(this.getObject(record.bucketId, record.key));
        this.addRefs(hashes, 1);
        versionId = this.installVersion(stored);
      });
      return versionId;
    } finally {
      this.releaseSegments(record.segments);
    }
  }

  /**
   * Inside a transaction: how a bucket keeps versions (versioning, object lock). The API has checked that the
   * bucket exists; one deleted meanwhile keeps none.
   */
  private bucketOf(bucketId: string): Pick<BucketRecord, 'versioning' | 'objectLock'> {
    return this.buckets.get([bucketId]) ?? {};
  }

  /** Inside a transaction: puts `record` (its blocks already referenced) as its key's current version. */
  private installVersion(record: ObjectRecord): string | undefined {
    const bucket = this.bucketOf(record.bucketId);
    const state = bucket.versioning;
    const { nullVersion: _given, retention, legalHold, ...rest } = record;
    if ((retention || legalHold) && !bucket.objectLock)
      throw S3Errors.invalidRequest('Bucket is missing Object Lock Configuration');
    const lock = retention ?? defaultRetention(bucket.objectLock?.rule, record.lastModified);
    const stored: ObjectRecord = {
      ...rest,
      v: RECORD_VERSION,
      ...(state === 'Enabled' ? {} : { nullVersion: true }),
      ...(lock && !record.deleteMarker ? { retention: lock } : {}),
      ...(legalHold && !record.deleteMarker ? { legalHold } : {}),
    };
    const at = [record.bucketId, record.key];
    const previous = this.objects.get(at);
    if (previous) {
      if (state === 'Enabled' || (state === 'Suspended' && s3VersionId(previous) !== 'null'))
        this.pushNoncurrent(previous);
      else this.dropVersion(previous, false);
    }
    if (state === 'Suspended') {
      const rank = this.versionRanks.get([...at, 'null']);
      if (rank !== undefined) {
        this.dropVersion(this.versions.get([...at, rank])!, false);
        this.versions.remove([...at, rank]);
        this.versionRanks.remove([...at, 'null']);
      }
    }
    this.objects.put(at, stored);
    return state ? s3VersionId(stored) : undefined;
  }

  /** Inside a transaction: a version that is no longer current goes first in its key's non-current list. */
  private pushNoncurrent(record: ObjectRecord): void {
    const at = [record.bucketId, record.key];
    let rank = TOP_RANK;
    for (const { key } of this.versions.range({ prefix: at, limit: 1 })) rank = (key[2] as number) - 1;
    this.versions.put([...at, rank], record);
    this.versionRanks.put([...at, s3VersionId(record)], rank);
  }

  /**
   * Inside a transaction: a version is about to be removed for good; refused while object lock protects it
   * (judged by the real time: nothing a caller says about time counts), and its blocks are dereferenced.
   */
  private dropVersion(record: ObjectRecord, bypassGovernance: boolean): void {
    if (isProtected(record, Date.now(), bypassGovernance))
      throw S3Errors.accessDenied('Access Denied because object protected by object lock.');
    this.addRefs(segmentHashes(record.segments), -1);
  }

  /**
   * DeleteObject. Without a version id: in an unversioned bucket the object goes; in a versioned one a delete
   * marker becomes the current version (the null version when versioning is suspended). With one, that version
   * goes for good (unless object lock protects it); when it was current, the newest older one takes its place.
   */
  async deleteObject(
    bucketId: string,
    key: string,
    versionId?: string,
    bypassGovernance = false,
  ): Promise<DeleteOutcome> {
    return this.db.transaction(() => this.deleteInTxn(bucketId, key, versionId, bypassGovernance));
  }

  private deleteInTxn(
    bucketId: string,
    key: string,
    versionId: string | undefined,
    bypassGovernance: boolean,
  ): DeleteOutcome {
    const at = [bucketId, key];
    if (versionId === undefined) {
      const bucket = this.bucketOf(bucketId);
      if (!bucket.versioning) {
        const previous = this.objects.get(at);
        if (previous) {
          this.dropVersion(previous, bypassGovernance);
          this.objects.remove(at);
        }
        return {};
      }
      const marker: ObjectRecord = {
        v: RECORD_VERSION,
        bucketId,
        key,
        versionId: newVersionId(),
        size: 0,
        etag: '',
        lastModified: Date.now(),
        headers: {},
        userMeta: {},
        checksums: {},
        segments: [],
        deleteMarker: true,
      };
      return { deleteMarker: true, versionId: this.installVersion(marker) };
    }
    const current = this.objects.get(at);
    if (current && s3VersionId(current) === versionId) {
      this.dropVersion(current, bypassGovernance);
      let promoted = false;
      for (const { key: newest, value } of this.versions.range({ prefix: at, limit: 1 })) {
        this.versions.remove(newest);
        this.versionRanks.remove([...at, s3VersionId(value)]);
        this.objects.put(at, value);
        promoted = true;
      }
      if (!promoted) this.objects.remove(at);
      return { versionId, ...(current.deleteMarker ? { deleteMarker: true } : {}) };
    }
    const rank = this.versionRanks.get([...at, versionId]);
    if (rank === undefined) return { versionId };
    const version = this.versions.get([...at, rank])!;
    this.dropVersion(version, bypassGovernance);
    this.versions.remove([...at, rank]);
    this.versionRanks.remove([...at, versionId]);
    return { versionId, ...(version.deleteMarker ? { deleteMarker: true } : {}) };
  }

  /** Replaces a version's record (tags, object lock) wherever it is kept. */
  private updateVersion(
    bucketId: string,
    key: string,
    versionId: string | undefined,
    change: (record: ObjectRecord) => ObjectRecord,
  ): string {
    const at = [bucketId, key];
    const current = this.objects.get(at);
    const found = this.getVersion(bucketId, key, versionId);
    if (!found)
      throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
    if (found.deleteMarker)
      throw new S3Error(
        'MethodNotAllowed',
        405,
        'The specified method is not allowed against this resource.',
      );
    const updated = change(found);
    if (current && s3VersionId(current) === s3VersionId(found)) this.objects.put(at, updated);
    else this.versions.put([...at, this.versionRanks.get([...at, s3VersionId(found)])!], updated);
    return s3VersionId(found);
  }

  async setObjectTags(
    bucketId: string,
    key: string,
    tags: Record<string, string> | undefined,
    versionId?: string,
  ): Promise<string> {
    return this.db.transaction(() =>
      this.updateVersion(bucketId, key, versionId, (record) => {
        const { tags: _old, ...rest } = record;
        return tags ? { ...rest, tags } : rest;
      }),
    );
  }

  /**
   * PutObjectRetention / PutObjectLegalHold. An active COMPLIANCE retention may only be extended; a GOVERNANCE
   * one shortened or removed only with `bypassGovernance`. Judged by the real time.
   */
  async setObjectLock(
    bucketId: string,
    key: string,
    versionId: string | undefined,
    change: LockChange,
    bypassGovernance = false,
  ): Promise<string> {
    return this.db.transaction(() => {
      if (!this.bucketOf(bucketId).objectLock)
        throw S3Errors.invalidRequest('Bucket is missing Object Lock Configuration');
      return this.updateVersion(bucketId, key, versionId, (record) => {
        const { retention: old, legalHold: _held, ...rest } = record;
        const legalHold = change.legalHold ?? record.legalHold;
        let retention = old;
        if (change.retention !== undefined) {
          const next = change.retention ?? undefined;
          // An active retention may be extended (and GOVERNANCE turned to COMPLIANCE), nothing else.
          const active = old !== undefined && old.until > Date.now();
          const keeps =
            !active ||
            (next !== undefined &&
              next.until >= old.until &&
              (old.mode === 'GOVERNANCE' || next.mode === 'COMPLIANCE'));
          if (!keeps && !(old?.mode === 'GOVERNANCE' && bypassGovernance))
            throw S3Errors.accessDenied('Access Denied because object protected by object lock.');
          retention = next;
        }
        return { ...rest, ...(retention ? { retention } : {}), ...(legalHold ? { legalHold } : {}) };
      });
    });
  }

  /** DeleteObjects: each entry as DeleteObject does, in one transaction; an entry refused is reported, not thrown. */
  async deleteObjects(
    bucketId: string,
    entries: DeleteEntry[],
    bypassGovernance = false,
  ): Promise<DeleteEntryOutcome[]> {
    return this.db.transaction(() =>
      entries.map((entry) => {
        try {
          return { ...entry, ...this.deleteInTxn(bucketId, entry.key, entry.versionId, bypassGovernance) };
        } catch (err) {
          if (!(err instanceof S3Error)) throw err;
          return { ...entry, error: { code: err.code, message: err.message } };
        }
      }),
    );
  }

  /**
   * Versions of a bucket's keys starting with `prefix`, in key order and newest first within a key, after
   * `after` (exclusive).
   */
  *listVersions(bucketId: string, prefix: string, after?: VersionCursor): Generator<VersionEntry> {
    if (after?.versionId !== undefined && after.key.startsWith(prefix)) {
      // The rest of the cursor's key first: its versions older than the one named.
      const at = [bucketId, after.key];
      const current = this.objects.get(at);
      const rank = this.versionRanks.get([...at, after.versionId]);
      const older =
        current && s3VersionId(current) === after.versionId
          ? this.versions.range({ prefix: at })
          : rank !== undefined
            ? this.versions.range({ prefix: at, start: [...at, rank + 1] })
            : [];
      for (const { value } of older) yield { record: value, isLatest: false };
    }
    for (const record of this.currentVersions(bucketId, prefix, after?.key)) {
      yield { record, isLatest: true };
      for (const { value } of this.versions.range({ prefix: [bucketId, record.key] }))
        yield { record: value, isLatest: false };
    }
  }

  // Objects of a bucket in key order, from `startAfter` (exclusive), all starting with `prefix`: current
  // versions that are not delete markers.
  *listObjects(bucketId: string, prefix: string, startAfter?: string): Generator<ObjectRecord> {
    for (const record of this.currentVersions(bucketId, prefix, startAfter))
      if (!record.deleteMarker) yield record;
  }

  // Current versions (delete markers too) in key order, after `startAfter` (exclusive).
  private *currentVersions(bucketId: string, prefix: string, startAfter?: string): Generator<ObjectRecord> {
    if (Buffer.byteLength(prefix) > LONGEST_KEY_BYTES) return;
    // A start key is cut to the longest key length (it would not fit in a metadata key otherwise): a
    // prefix of it sorts no later, and keys up to startAfter are skipped below.
    const start = truncateUtf8(startAfter !== undefined && startAfter >= prefix ? startAfter : prefix);
    for (const { value } of this.objects.range({ prefix: [bucketId], start: [bucketId, start] })) {
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
  async completeUpload(upload: UploadRecord, record: ObjectRecord): Promise<string | undefined> {
    return this.db.transaction(() => {
      this.getUpload(upload.bucketId, upload.key, upload.uploadId);
      this.addRefs(segmentHashes(record.segments), 1);
      const { deleteMarker: _notMarker, ...stored } = record;
      const versionId = this.installVersion({ ...stored, uploadId: upload.uploadId });
      this.removeUploadInTxn(upload);
      return versionId;
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

/** The rank of a key's first non-current version; each one pushed after it ranks one lower (sorts first). */
const TOP_RANK = 2 ** 52;

/** The retention a bucket's default rule gives a version written at `at` (ms). */
export function defaultRetention(rule: DefaultRetention | undefined, at: number): Retention | undefined {
  if (!rule) return undefined;
  const until = new Date(at);
  if (rule.years) until.setUTCFullYear(until.getUTCFullYear() + rule.years);
  if (rule.days) until.setUTCDate(until.getUTCDate() + rule.days);
  return { mode: rule.mode, until: until.getTime() };
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
