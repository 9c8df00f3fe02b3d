// backend/backend-store: the ObjectStore of a node with a [backend]: objects live in an existing S3 service
// (Ceph RGW, Garage, MinIO, AWS), one backend object each (object-format.ts), written as they stream through
// and read back by ranges. The node keeps no object data; access keys, buckets and permissions are kept by
// the node's own metadata store for now (docs/gateway.md, "Limits").
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { BackendConfig } from '../config/config.js';
import type { BlockSealer } from '../model/segments.js';
import {
  checkWriteCondition,
  type LocalStore,
  type NewUpload,
  type ObjectStore,
  type ObjectStreams,
  type StreamedObject,
  type WriteCondition,
} from '../model/store.js';
import type {
  BucketRecord,
  CorsRule,
  ObjectRecord,
  PartRecord,
  Permission,
  Segment,
  UploadRecord,
} from '../model/types.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { backendErrorCode, backendStatus, fromBackend } from './client.js';
import { backendKey, backendMetadata, bucketPrefix, headRecord, listedRecord } from './object-format.js';
import { sealStream } from './seal-stream.js';

/** Keys per DeleteObjects request: S3's limit. */
const DELETE_BATCH = 1000;

// A backend request whose failure becomes what coffre's client should see (client.ts fromBackend).
async function guarded<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (err) {
    throw fromBackend(err);
  }
}

function notYet(what: string): S3Error {
  return S3Errors.notImplemented(`${what} through a gateway with a [backend] (not yet: see docs/gateway.md)`);
}

export class BackendStore implements ObjectStore {
  readonly streams: ObjectStreams;
  // Bucket names by id: the API names buckets by id below the router, the backend by name.
  private readonly names = new Map<string, string>();

  constructor(
    private readonly client: S3Client,
    private readonly config: BackendConfig,
    private readonly local: LocalStore,
  ) {
    this.streams = { putObjectStream: (...args) => this.putObjectStream(...args) };
  }

  // ---- access keys and buckets: the node's own metadata store

  createKey(name: string, allowCreateBucket: boolean) {
    return this.local.createKey(name, allowCreateBucket);
  }
  getKey(id: string) {
    return this.local.getKey(id);
  }
  findKey(idOrName: string) {
    return this.local.findKey(idOrName);
  }
  listKeys() {
    return this.local.listKeys();
  }
  setKeyCreateBucket(id: string, allowCreateBucket: boolean) {
    return this.local.setKeyCreateBucket(id, allowCreateBucket);
  }
  deleteKey(id: string) {
    return this.local.deleteKey(id);
  }
  async bucketByName(name: string) {
    return this.known(await this.local.bucketByName(name));
  }
  async listBuckets() {
    const buckets = await this.local.listBuckets();
    for (const b of buckets) this.known(b);
    return buckets;
  }
  async createBucket(name: string, owner?: string) {
    return this.known(await this.local.createBucket(name, owner))!;
  }
  async setBucketCors(bucketId: string, cors: CorsRule[] | undefined) {
    return this.local.setBucketCors(bucketId, cors);
  }
  async setBucketEncryption(bucketId: string, defaultEncryption: 'AES256' | undefined) {
    return this.local.setBucketEncryption(bucketId, defaultEncryption);
  }
  async setBucketTags(bucketId: string, tags: Record<string, string> | undefined) {
    return this.local.setBucketTags(bucketId, tags);
  }
  async setPermission(bucketId: string, keyId: string, perm: Permission) {
    return this.local.setPermission(bucketId, keyId, perm);
  }
  async deleteBucket(name: string) {
    // The node's metadata knows no objects: whether the bucket is empty is the backend's to say.
    const listed = await guarded(
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.config.bucket,
          Prefix: bucketPrefix(this.config.prefix, name),
          MaxKeys: 1,
        }),
      ),
    );
    if ((listed.KeyCount ?? 0) > 0)
      throw new S3Error('BucketNotEmpty', 409, 'The bucket you tried to delete is not empty', {
        BucketName: name,
      });
    await this.local.deleteBucket(name);
  }

  private known(bucket: BucketRecord | undefined): BucketRecord | undefined {
    if (bucket) this.names.set(bucket.id, bucket.name);
    return bucket;
  }

  private async bucketName(bucketId: string): Promise<string> {
    const name = this.names.get(bucketId) ?? (await this.listBuckets()).find((b) => b.id === bucketId)?.name;
    if (name === undefined) throw S3Errors.noSuchBucket(bucketId);
    return name;
  }

  private async objectKey(bucketId: string, key: string): Promise<string> {
    return backendKey(this.config.prefix, await this.bucketName(bucketId), key);
  }

  // ---- objects

  async getObject(bucketId: string, key: string): Promise<ObjectRecord | undefined> {
    const stored = await this.objectKey(bucketId, key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: stored }));
      return headRecord(bucketId, key, {
        key: stored,
        size: head.ContentLength,
        etag: head.ETag,
        lastModified: head.LastModified,
        metadata: head.Metadata,
      });
    } catch (err) {
      if (backendStatus(err) === 404) return undefined;
      throw fromBackend(err);
    }
  }

  private async putObjectStream(
    object: StreamedObject,
    source: AsyncIterable<Buffer>,
    plainSize: number,
    sealer: BlockSealer,
    condition?: WriteCondition,
  ): Promise<ObjectRecord> {
    if (object.tags) throw notYet('object tagging');
    const stored = await this.objectKey(object.bucketId, object.key);
    const metadata = backendMetadata(object);
    // Conditions are checked against the current object, then passed to the backend as its own ETag so that
    // a backend that honours conditional writes closes the gap between the check and the write.
    let ifMatch: string | undefined;
    if (condition && (condition.ifMatch !== undefined || condition.ifNoneMatch !== undefined)) {
      const current = await this.getObject(object.bucketId, object.key);
      checkWriteCondition(condition, current);
      ifMatch = condition.ifMatch !== undefined ? current?.segments[0]?.backend?.etag : undefined;
    }
    let sourceError: unknown;
    const body = Readable.from(
      (async function* () {
        try {
          yield* sealStream(source, plainSize, sealer);
        } catch (err) {
          sourceError = err;
          throw err;
        }
      })(),
      { highWaterMark: 1 },
    );
    let put;
    try {
      put = await this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: stored,
          Body: body,
          ContentLength: sealer.sealedSize(plainSize, 0),
          ContentType: 'application/octet-stream',
          Metadata: metadata,
          ...(ifMatch ? { IfMatch: ifMatch } : {}),
          ...(condition?.ifNoneMatch === '*' ? { IfNoneMatch: '*' } : {}),
        }),
      );
    } catch (err) {
      body.destroy();
      if (sourceError) throw sourceError;
      if (backendStatus(err) === 412 || backendErrorCode(err) === 'PreconditionFailed')
        throw new S3Error(
          'PreconditionFailed',
          412,
          'At least one of the pre-conditions you specified did not hold',
          {
            Condition: ifMatch ? 'If-Match' : 'If-None-Match',
          },
        );
      throw fromBackend(err);
    }
    if (!put.ETag) throw S3Errors.internal('the storage backend gave no ETag for a stored object');
    const record = headRecord(object.bucketId, object.key, {
      key: stored,
      size: sealer.sealedSize(plainSize, 0),
      etag: put.ETag,
      lastModified: new Date(),
      metadata,
    });
    return record;
  }

  putObject(): Promise<void> {
    return Promise.reject(notYet('copying objects'));
  }

  async deleteObject(bucketId: string, key: string): Promise<void> {
    await guarded(
      this.client.send(
        new DeleteObjectCommand({ Bucket: this.config.bucket, Key: await this.objectKey(bucketId, key) }),
      ),
    );
  }

  async deleteObjects(bucketId: string, keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = await Promise.all(
        keys.slice(i, i + DELETE_BATCH).map((k) => this.objectKey(bucketId, k)),
      );
      const out = await guarded(
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.config.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      const failed = out.Errors ?? [];
      if (failed.length > 0)
        throw new S3Error(
          'ServiceUnavailable',
          503,
          `The storage backend did not delete ${failed.length} objects; please retry.`,
        );
    }
  }

  setObjectTags(): Promise<void> {
    return Promise.reject(notYet('object tagging'));
  }

  async listObjects(bucketId: string, prefix: string, startAfter: string | undefined, limit: number) {
    const base = bucketPrefix(this.config.prefix, await this.bucketName(bucketId));
    const out: ObjectRecord[] = [];
    let token: string | undefined;
    // Objects that are no coffre streams are left out, so a page may need more than one backend page.
    while (out.length < limit) {
      const page = await guarded(
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: base + prefix,
            ...(token
              ? { ContinuationToken: token }
              : startAfter !== undefined
                ? { StartAfter: base + startAfter }
                : {}),
            MaxKeys: Math.min(1000, limit - out.length),
          }),
        ),
      );
      const listed = page;
      for (const item of listed.Contents ?? []) {
        if (!item.Key?.startsWith(base)) continue;
        const record = listedRecord(bucketId, item.Key.slice(base.length), {
          key: item.Key,
          size: item.Size,
          etag: item.ETag,
          lastModified: item.LastModified,
        });
        if (record) out.push(record);
      }
      if (!listed.IsTruncated || !listed.NextContinuationToken) break;
      token = listed.NextContinuationToken;
    }
    return out;
  }

  // ---- multipart uploads: not yet

  createUpload(_record: NewUpload): Promise<UploadRecord> {
    return Promise.reject(notYet('multipart uploads'));
  }
  getUpload(_bucketId: string, _key: string, uploadId: string): Promise<UploadRecord> {
    return Promise.reject(S3Errors.noSuchUpload(uploadId));
  }
  async listUploads(): Promise<UploadRecord[]> {
    return [];
  }
  putPart(): Promise<void> {
    return Promise.reject(notYet('multipart uploads'));
  }
  async listParts(): Promise<PartRecord[]> {
    return [];
  }
  completeUpload(): Promise<void> {
    return Promise.reject(notYet('multipart uploads'));
  }
  abortUpload(): Promise<void> {
    return Promise.reject(notYet('multipart uploads'));
  }

  // ---- bytes: a backend object's, by range; there are no blocks here

  async unreferencedBlocks(): Promise<string[]> {
    return [];
  }
  writeSegment(): Promise<Segment> {
    return Promise.reject(notYet('this operation'));
  }
  releaseSegments(): void {}
  retainSegments(): void {}
  readSegment(segment: Segment, start: number, end: number): Readable {
    return Readable.from(this.segmentSlices(segment, start, end), { highWaterMark: 1 });
  }

  async *segmentSlices(segment: Segment, start: number, end: number): AsyncGenerator<Buffer> {
    const at = segment.backend;
    if (!at) throw S3Errors.internal('a segment read from a backend has no backend location');
    if (end <= start) return;
    let body;
    try {
      const got = await this.client.send(
        new GetObjectCommand({
          Bucket: this.config.bucket,
          Key: at.key,
          Range: `bytes=${at.offset + start}-${at.offset + end - 1}`,
          IfMatch: at.etag,
        }),
      );
      body = got.Body as Readable | undefined;
      if (!body) throw S3Errors.internal('the storage backend sent no body');
      if (got.ContentLength !== end - start)
        throw S3Errors.internal(
          `the storage backend sent ${got.ContentLength} bytes for a range of ${end - start}`,
        );
    } catch (err) {
      if (backendStatus(err) === 412)
        throw new S3Error(
          'ServiceUnavailable',
          503,
          'The object changed while it was being read; please retry.',
        );
      throw fromBackend(err);
    }
    try {
      for await (const piece of body) yield piece as Buffer;
    } catch (err) {
      throw fromBackend(err);
    } finally {
      body.destroy();
    }
  }
}
