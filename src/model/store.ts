// model/store: the operations the APIs use on buckets, keys, objects and uploads, as one asynchronous
// interface. A storage node serves it from its own model (LocalStore); a gateway node serves it by calling a
// storage node over RPC for metadata while moving blocks itself (rpc/remote-store.ts). Every argument and
// result is plain data, so any method can cross the network.
import type { BlockReadOptions } from '../block/block-store.js';
import { etagInList } from '../util/etag.js';
import type { Readable } from 'node:stream';
import { S3Error, S3Errors } from '../util/s3-error.js';
import type {
  DeleteEntry,
  DeleteEntryOutcome,
  DeleteOutcome,
  LockChange,
  Model,
  VersionCursor,
  VersionEntry,
} from './model.js';
import type { BlockSealer } from './segments.js';
import type { FileSlice } from '../util/file-slice.js';
import type {
  AccessKeyRecord,
  BucketRecord,
  CorsRule,
  DefaultRetention,
  LifecycleRule,
  ObjectRecord,
  PartRecord,
  Permission,
  Segment,
  UploadRecord,
  VersioningState,
} from './types.js';

// Conditional write (PutObject with If-Match / If-None-Match), checked inside the committing transaction.
export interface WriteCondition {
  ifMatch?: string;
  ifNoneMatch?: string;
}

export type NewUpload = Omit<UploadRecord, 'v' | 'uploadId' | 'initiated'>;

export interface MetadataStore {
  // access keys
  createKey(name: string, allowCreateBucket: boolean): Promise<AccessKeyRecord>;
  getKey(id: string): Promise<AccessKeyRecord | undefined>;
  findKey(idOrName: string): Promise<AccessKeyRecord | undefined>;
  listKeys(): Promise<AccessKeyRecord[]>;
  setKeyCreateBucket(id: string, allowCreateBucket: boolean): Promise<void>;
  deleteKey(id: string): Promise<void>;
  // buckets
  bucketByName(name: string): Promise<BucketRecord | undefined>;
  listBuckets(): Promise<BucketRecord[]>;
  // With objectLock, the bucket is created with object lock enabled (and so versioning, for good).
  createBucket(name: string, owner?: string, objectLock?: boolean): Promise<BucketRecord>;
  setBucketVersioning(bucketId: string, state: VersioningState): Promise<BucketRecord>;
  // Enables object lock on a versioned bucket, with the default retention of new versions (none: undefined).
  setBucketObjectLock(bucketId: string, rule: DefaultRetention | undefined): Promise<BucketRecord>;
  setBucketCors(bucketId: string, cors: CorsRule[] | undefined): Promise<BucketRecord>;
  setBucketLifecycle(bucketId: string, rules: LifecycleRule[] | undefined): Promise<BucketRecord>;
  setBucketEncryption(bucketId: string, defaultEncryption: 'AES256' | undefined): Promise<BucketRecord>;
  setBucketTags(bucketId: string, tags: Record<string, string> | undefined): Promise<BucketRecord>;
  // The bucket policy's JSON text (undefined removes it); the API checks it before it gets here.
  setBucketPolicy(bucketId: string, policy: string | undefined): Promise<BucketRecord>;
  setPermission(bucketId: string, keyId: string, perm: Permission): Promise<BucketRecord>;
  deleteBucket(name: string): Promise<void>;
  // objects. Version ids are the ones S3 clients see ("null" for the null version; see model/types s3VersionId).
  // The current version of a key, unless it is a delete marker.
  getObject(bucketId: string, key: string): Promise<ObjectRecord | undefined>;
  // A version (delete markers included), or without an id the current one.
  getVersion(bucketId: string, key: string, versionId?: string): Promise<ObjectRecord | undefined>;
  // Stores a new version as the bucket's versioning says; its version id, or undefined when unversioned.
  putObject(record: ObjectRecord, condition?: WriteCondition): Promise<string | undefined>;
  // Without a version id, deletes (or in a versioned bucket, puts a delete marker); with one, removes that
  // version for good unless object lock protects it (AccessDenied).
  deleteObject(
    bucketId: string,
    key: string,
    versionId?: string,
    bypassGovernance?: boolean,
  ): Promise<DeleteOutcome>;
  // Replaces a version's tags (undefined removes them); NoSuchKey / NoSuchVersion when there is none. Returns
  // the version id.
  setObjectTags(
    bucketId: string,
    key: string,
    tags: Record<string, string> | undefined,
    versionId?: string,
  ): Promise<string>;
  // Changes a version's retention or legal hold, as object lock allows; returns the version id.
  setObjectLock(
    bucketId: string,
    key: string,
    versionId: string | undefined,
    change: LockChange,
    bypassGovernance?: boolean,
  ): Promise<string>;
  deleteObjects(
    bucketId: string,
    entries: DeleteEntry[],
    bypassGovernance?: boolean,
  ): Promise<DeleteEntryOutcome[]>;
  // Up to `limit` versions in key order, newest first within a key, after `after`, keys starting with `prefix`.
  listVersions(
    bucketId: string,
    prefix: string,
    after: VersionCursor | undefined,
    limit: number,
  ): Promise<VersionEntry[]>;
  // Up to `limit` objects in key order after `startAfter` (exclusive), all starting with `prefix`.
  listObjects(
    bucketId: string,
    prefix: string,
    startAfter: string | undefined,
    limit: number,
  ): Promise<ObjectRecord[]>;
  // multipart uploads
  createUpload(record: NewUpload): Promise<UploadRecord>;
  getUpload(bucketId: string, key: string, uploadId: string): Promise<UploadRecord>;
  listUploads(bucketId: string): Promise<UploadRecord[]>;
  putPart(upload: UploadRecord, part: PartRecord): Promise<void>;
  listParts(uploadId: string): Promise<PartRecord[]>;
  completeUpload(upload: UploadRecord, record: ObjectRecord): Promise<string | undefined>;
  abortUpload(upload: UploadRecord): Promise<void>;
  // blocks: which of `hashes` no record refers to and no upload in progress here protects
  unreferencedBlocks(hashes: string[]): Promise<string[]>;
}

export interface SegmentIo {
  // Stores a byte stream as blocks, sealed by `sealer` if given; the segment's blocks stay protected from
  // collection until released.
  writeSegment(source: AsyncIterable<Buffer | Uint8Array | string>, sealer?: BlockSealer): Promise<Segment>;
  releaseSegments(segments: Segment[]): void;
  // Protects blocks a record is about to refer to (a copy sharing blocks) until released.
  retainSegments(segments: Segment[]): void;
  // Stored bytes [start, end) of a segment, block by block (see model/segments readSegment).
  readSegment(segment: Segment, start: number, end: number, opts?: BlockReadOptions): Readable;
  // The same for a reader that authenticates the bytes itself: local blocks as file slices, to be read by
  // the thread that uses them (see model/segments segmentSlices).
  segmentSlices(segment: Segment, start: number, end: number): AsyncIterable<Buffer | FileSlice>;
}

// An object as a streaming store is given it: everything but what only the stored bytes can tell.
export type StreamedObject = Omit<ObjectRecord, 'size' | 'etag' | 'lastModified' | 'segments'> & {
  // The encrypted stream's header (see Segment.cryptoHeader).
  cryptoHeader: Buffer;
};

/**
 * A store that keeps each object's bytes as one stream in another service (backend/) rather than as blocks:
 * it takes an object whole — what is known of it first, then its `plainSize` bytes as they come, sealed by
 * `sealer` on the way (as writeSegment seals blocks) — and answers with the record as stored. Its records are rebuilt from that service on each read.
 */
export interface ObjectStreams {
  // The version a GET is about to read (as getVersion finds it), with the object's first bytes fetched by the
  // same request to the service: a small object is then read with one request, not a HEAD and a GET.
  readVersion(bucketId: string, key: string, versionId?: string): Promise<ObjectRecord | undefined>;
  putObjectStream(
    object: StreamedObject,
    source: AsyncIterable<Buffer>,
    plainSize: number,
    sealer: BlockSealer,
    condition?: WriteCondition,
  ): Promise<ObjectRecord>;
  // UploadPart: the part's bytes, sealed on the way; answers the part's ETag.
  putPartStream(
    upload: UploadRecord,
    partNumber: number,
    source: AsyncIterable<Buffer>,
    plainSize: number,
    sealer: BlockSealer & { readonly header: Buffer },
  ): Promise<{ etag: string }>;
  // CompleteMultipartUpload of the parts named (ascending numbers, the ETags putPartStream gave).
  completeUploadStream(
    upload: UploadRecord,
    parts: { partNumber: number; etag: string }[],
  ): Promise<ObjectRecord>;
  // CopyObject onto the source itself that keeps its version id and stream (same key, same stream header),
  // changing only what `object` says of it (sealed metadata, tags): the service copies its bytes itself,
  // and only if `source` is still the current object (else PreconditionFailed, 412).
  replaceMetadataStream(object: StreamedObject, source: ObjectRecord): Promise<ObjectRecord>;
  // The tags of an object as getObject gave it: kept beside the object in such a store, read only when asked
  // for (GetObjectTagging, a copy), not on every GET.
  objectTags(record: ObjectRecord): Promise<Record<string, string> | undefined>;
}

export interface ObjectStore extends MetadataStore, SegmentIo {
  // Present when objects are stored as streams (an S3 backend): PutObject writes through it.
  readonly streams?: ObjectStreams;
}

export const METADATA_METHODS = [
  'createKey',
  'getKey',
  'findKey',
  'listKeys',
  'setKeyCreateBucket',
  'deleteKey',
  'bucketByName',
  'listBuckets',
  'createBucket',
  'setBucketVersioning',
  'setBucketObjectLock',
  'setBucketCors',
  'setBucketLifecycle',
  'setBucketEncryption',
  'setBucketTags',
  'setBucketPolicy',
  'setObjectTags',
  'setObjectLock',
  'setPermission',
  'deleteBucket',
  'getObject',
  'getVersion',
  'putObject',
  'deleteObject',
  'deleteObjects',
  'listObjects',
  'listVersions',
  'createUpload',
  'getUpload',
  'listUploads',
  'putPart',
  'listParts',
  'completeUpload',
  'abortUpload',
  'unreferencedBlocks',
] as const satisfies readonly (keyof MetadataStore)[];

/**
 * The metadata calls that only read. With two metadata nodes and one of them gone, the other serves these from
 * its own tables (rpc/metadata-replication, degraded reads): every acknowledged write is on both.
 */
export const METADATA_READS: ReadonlySet<string> = new Set<(typeof METADATA_METHODS)[number]>([
  'getKey',
  'findKey',
  'listKeys',
  'bucketByName',
  'listBuckets',
  'getObject',
  'getVersion',
  'listObjects',
  'listVersions',
  'getUpload',
  'listUploads',
  'listParts',
]);

export function checkWriteCondition(
  condition: WriteCondition | undefined,
  current: ObjectRecord | undefined,
): void {
  if (!condition) return;
  if (condition.ifMatch !== undefined) {
    if (!current) throw new S3Error('NoSuchKey', 404, 'The specified key does not exist.');
    if (!etagInList(condition.ifMatch, current.etag)) throw preconditionFailed('If-Match');
  }
  if (condition.ifNoneMatch !== undefined && current && etagInList(condition.ifNoneMatch, current.etag)) {
    throw preconditionFailed('If-None-Match');
  }
}

function preconditionFailed(condition: string): S3Error {
  return new S3Error(
    'PreconditionFailed',
    412,
    'At least one of the pre-conditions you specified did not hold',
    {
      Condition: condition,
    },
  );
}

// The store of a node that holds the data itself.
export class LocalStore implements ObjectStore {
  constructor(readonly model: Model) {}

  async createKey(name: string, allowCreateBucket: boolean) {
    return this.model.createKey(name, allowCreateBucket);
  }
  async getKey(id: string) {
    return this.model.getKey(id);
  }
  async findKey(idOrName: string) {
    return this.model.findKey(idOrName);
  }
  async listKeys() {
    return this.model.listKeys();
  }
  async setKeyCreateBucket(id: string, allowCreateBucket: boolean) {
    await this.model.updateKey(id, { allowCreateBucket });
  }
  async deleteKey(id: string) {
    await this.model.deleteKey(id);
  }
  async bucketByName(name: string) {
    return this.model.bucketByName(name);
  }
  async listBuckets() {
    return this.model.listBuckets();
  }
  async createBucket(name: string, owner?: string, objectLock?: boolean) {
    return this.model.createBucket(name, owner, objectLock === true);
  }
  async setBucketVersioning(bucketId: string, state: VersioningState) {
    return this.model.setVersioning(bucketId, state);
  }
  async setBucketObjectLock(bucketId: string, rule: DefaultRetention | undefined) {
    return this.model.setObjectLockConfig(bucketId, rule);
  }
  async setBucketCors(bucketId: string, cors: CorsRule[] | undefined) {
    return this.model.updateBucket(bucketId, (b) => ({ ...b, cors }));
  }
  async setBucketLifecycle(bucketId: string, rules: LifecycleRule[] | undefined) {
    return this.model.updateBucket(bucketId, (b) => ({
      ...b,
      lifecycle: rules && rules.length > 0 ? rules : undefined,
    }));
  }
  async setBucketTags(bucketId: string, tags: Record<string, string> | undefined) {
    return this.model.updateBucket(bucketId, (b) => ({ ...b, tags: plainTags(tags) }));
  }
  async setBucketPolicy(bucketId: string, policy: string | undefined) {
    return this.model.updateBucket(bucketId, (b) => {
      const { policy: _old, ...rest } = b;
      return typeof policy === 'string' ? { ...rest, policy } : rest;
    });
  }
  async setObjectTags(
    bucketId: string,
    key: string,
    tags: Record<string, string> | undefined,
    versionId?: string,
  ) {
    return this.model.setObjectTags(bucketId, key, plainTags(tags), versionId);
  }
  async setObjectLock(
    bucketId: string,
    key: string,
    versionId: string | undefined,
    change: LockChange,
    bypassGovernance?: boolean,
  ) {
    return this.model.setObjectLock(bucketId, key, versionId, change, bypassGovernance === true);
  }
  async setBucketEncryption(bucketId: string, defaultEncryption: 'AES256' | undefined) {
    // Arguments cross the network as JSON: anything but the one value offered clears the setting.
    return this.model.updateBucket(bucketId, (b) => ({
      ...b,
      defaultEncryption: defaultEncryption === 'AES256' ? defaultEncryption : undefined,
    }));
  }
  async setPermission(bucketId: string, keyId: string, perm: Permission) {
    return this.model.setPermission(bucketId, keyId, perm);
  }
  async deleteBucket(name: string) {
    await this.model.deleteBucket(name);
  }
  async getObject(bucketId: string, key: string) {
    return this.model.getObject(bucketId, key);
  }
  async getVersion(bucketId: string, key: string, versionId?: string) {
    return this.model.getVersion(bucketId, key, versionId);
  }
  async putObject(record: ObjectRecord, condition?: WriteCondition) {
    return this.model.putObject(record, (current) => checkWriteCondition(condition, current));
  }
  async deleteObject(bucketId: string, key: string, versionId?: string, bypassGovernance?: boolean) {
    return this.model.deleteObject(bucketId, key, versionId, bypassGovernance === true);
  }
  async deleteObjects(bucketId: string, entries: DeleteEntry[], bypassGovernance?: boolean) {
    return this.model.deleteObjects(bucketId, entries, bypassGovernance === true);
  }
  async listVersions(bucketId: string, prefix: string, after: VersionCursor | undefined, limit: number) {
    const out: VersionEntry[] = [];
    for (const v of this.model.listVersions(bucketId, prefix, after)) {
      if (out.length >= limit) break;
      out.push(v);
    }
    return out;
  }
  async listObjects(bucketId: string, prefix: string, startAfter: string | undefined, limit: number) {
    const out: ObjectRecord[] = [];
    for (const o of this.model.listObjects(bucketId, prefix, startAfter)) {
      if (out.length >= limit) break;
      out.push(o);
    }
    return out;
  }
  async createUpload(record: NewUpload) {
    return this.model.createUpload(record);
  }
  async getUpload(bucketId: string, key: string, uploadId: string) {
    return this.model.getUpload(bucketId, key, uploadId);
  }
  async listUploads(bucketId: string) {
    return [...this.model.listUploads(bucketId)];
  }
  async putPart(upload: UploadRecord, part: PartRecord) {
    await this.model.putPart(upload, part);
  }
  async listParts(uploadId: string) {
    return this.model.listParts(uploadId);
  }
  async completeUpload(upload: UploadRecord, record: ObjectRecord) {
    return this.model.completeUpload(upload, record);
  }
  async abortUpload(upload: UploadRecord) {
    await this.model.abortUpload(upload);
  }
  async unreferencedBlocks(hashes: string[]) {
    return this.model.unreferencedBlocks(hashes);
  }
  writeSegment(source: AsyncIterable<Buffer | Uint8Array | string>, sealer?: BlockSealer) {
    return this.model.writeSegment(source, sealer);
  }
  releaseSegments(segments: Segment[]) {
    this.model.releaseSegments(segments);
  }
  retainSegments(segments: Segment[]) {
    this.model.pins.pin(segments.flatMap((s) => s.blocks.map((b) => b.hash)));
  }
  readSegment(segment: Segment, start: number, end: number, opts?: BlockReadOptions) {
    return this.model.readSegment(segment, start, end, opts);
  }
  segmentSlices(segment: Segment, start: number, end: number) {
    return this.model.segmentSlices(segment, start, end);
  }
}

// The bucket named `name`, or NoSuchBucket.
export async function requireBucket(store: MetadataStore, name: string): Promise<BucketRecord> {
  const b = await store.bucketByName(name);
  if (!b) throw S3Errors.noSuchBucket(name);
  return b;
}

// Tags arrive as JSON from other nodes: keep string pairs only, and store none rather than an empty set.
function plainTags(tags: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!tags || typeof tags !== 'object') return undefined;
  const entries = Object.entries(tags).filter(([, v]) => typeof v === 'string');
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}
