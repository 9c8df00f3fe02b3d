// backend/backend-store: the ObjectStore of a node with a [backend]: objects live in an existing S3 service
// (Ceph RGW, Garage, MinIO, AWS), one backend object each (object-format.ts), written as they stream through
// and read back by ranges. The node keeps no object data, and no records of its own: access keys, buckets and
// permissions are sealed records in the backend too (records.ts), so any number of gateways share them.
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { BackendConfig } from '../config/config.js';
import type { BlockSealer } from '../model/segments.js';
import type {
  DeleteEntry,
  DeleteEntryOutcome,
  DeleteOutcome,
  VersionCursor,
  VersionEntry,
} from '../model/model.js';
import {
  checkWriteCondition,
  type NewUpload,
  type ObjectStore,
  type ObjectStreams,
  type StreamedObject,
  type WriteCondition,
} from '../model/store.js';
import {
  RECORD_VERSION,
  type BucketRecord,
  type CorsRule,
  type LifecycleRule,
  type ObjectRecord,
  type PartRecord,
  type Permission,
  type Segment,
  type UploadRecord,
  type VersioningState,
} from '../model/types.js';
import { UserError, errorMessage } from '../util/errors.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { backendErrorCode, backendStatus, fromBackend, writeIfMatch } from './client.js';
import {
  UPLOAD_ID,
  atBackendVersion,
  backendKey,
  type BackendObjectFacts,
  checkedBackendVersion,
  backendMetadata,
  bucketPrefix,
  checkMetadataFits,
  coffrePartEtag,
  decodePartTable,
  decodeUpload,
  encodePartTable,
  encodeUpload,
  headRecord,
  isMultipart,
  listedRecord,
  markerDigestOf,
  partEtagNames,
  partMarkerKey,
  partMarkersPrefix,
  parsePartMarker,
  partTableKey,
  plainSizeOf,
  stateKey,
  uploadMetadata,
  uploadRecordKey,
  versionIdOf,
  type BackendUpload,
  type TablePart,
} from './object-format.js';
import { BackendRequestError, type ObjectHead, type ObjectRequests } from './object-requests.js';
import type { SharedRecords } from './records.js';
import { sealStream } from './seal-stream.js';

/** Keys per DeleteObjects request: S3's limit. */
const DELETE_BATCH = 1000;
/** S3's smallest part but the last, checked on plaintext sizes (the backend sees larger, sealed ones). */
const MIN_PART_SIZE = 5 * 1024 * 1024;
/** Entries kept in each of the store's caches of immutable facts. */
const CACHE_ENTRIES = 10_000;
/** Bytes of a backend object's body handed on at once to be decrypted (16 chunks of 64 KiB). */
const READ_PIECE = 1024 * 1024;
/**
 * How much of an object a GET fetches with its metadata, in the request that finds the object: all of a small
 * object, so that reading it takes one backend request (two with a HEAD first), and the start of a large one.
 */
const FIRST_BYTES = 256 * 1024;
/** Objects whose sealed form is up to this size are sealed whole before they are sent (putObjectStream). */
const SMALL_OBJECT = 64 * 1024;
/** Multipart objects a listing looks up at once for their plaintext size. */
const LOOKUPS_IN_FLIGHT = 8;

function remember<K, V>(cache: Map<K, V>, key: K, value: V): void {
  if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value as K);
  cache.set(key, value);
}

// A sealed body for the backend, and the error its source failed with, if it did (a bad signature or
// digest, a short body): that error, not the backend's complaint about a cut request, is the client's answer.
function sealedBody(
  source: AsyncIterable<Buffer>,
  plainSize: number,
  sealer: BlockSealer,
): { body: Readable; failure: () => unknown; signal: AbortSignal } {
  let sourceError: unknown;
  // The SDK pipes the body into its request, and a pipe neither handles its source's error nor ends the
  // request: the failed body aborts the request (which then fails at once) and is not left unhandled,
  // which would end the process.
  const abort = new AbortController();
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
  body.on('error', () => abort.abort());
  return { body, failure: () => sourceError, signal: abort.signal };
}

// The body of a GET of an object's first bytes, whole; undefined (and the body dropped) if the backend sent
// more than asked for (it ignored the Range).
async function gathered(body: Readable, length: number): Promise<Buffer | undefined> {
  if (!(length <= FIRST_BYTES)) {
    body.destroy();
    return undefined;
  }
  let bytes;
  try {
    bytes = await gatheredStream(body as AsyncIterable<Buffer>, length);
  } catch (err) {
    throw fromBackend(err);
  }
  if (bytes.length !== length)
    throw S3Errors.internal(`the storage backend sent ${bytes.length} bytes of an object's first ${length}`);
  return bytes;
}

// A stream's bytes in one buffer; `expected` is how many there should be (the buffer holds what came).
async function gatheredStream(source: AsyncIterable<Buffer>, expected: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let got = 0;
  for await (const piece of source) {
    pieces.push(piece);
    got += piece.length;
  }
  return pieces.length === 1 && got === expected ? pieces[0]! : Buffer.concat(pieces, got);
}

// The backend's ETag of an object made by a multipart upload ends in "-<number of parts>".
function isMultipartEtag(etag: string | undefined): boolean {
  return etag !== undefined && /-\d+"?$/.test(etag);
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function invalidPart(r: { partNumber: number; etag: string }): S3Error {
  return new S3Error(
    'InvalidPart',
    400,
    "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
    { PartNumber: String(r.partNumber), ETag: r.etag },
  );
}

// The x-amz-copy-source of a backend object: its bucket and key, each path segment percent-encoded.
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

// A backend request whose failure becomes what coffre's client should see (client.ts fromBackend).
async function guarded<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (err) {
    throw fromBackend(err);
  }
}

// A HEAD of a version that is a delete marker: 405 from AWS (and coffre), 404 from some engines, with
// x-amz-delete-marker: true either way.
function isDeleteMarker(err: unknown): boolean {
  return errorHeaders(err)?.['x-amz-delete-marker'] === 'true';
}

// The headers of a backend's error answer (a HEAD's has no body to say more).
function errorHeaders(err: unknown): Record<string, string | string[] | undefined> | undefined {
  if (err instanceof BackendRequestError) return err.headers;
  return (err as { $response?: { headers?: Record<string, string> } }).$response?.headers;
}

function lastModifiedOf(err: unknown): Date {
  const headers = errorHeaders(err);
  const modified = headers?.['last-modified'];
  const date = typeof modified === 'string' ? new Date(modified) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : new Date();
}

// The record of a delete marker: a version with no data, named by the backend's version id.
function deleteMarker(bucketId: string, key: string, backendVersionId: string, at: Date): ObjectRecord {
  return {
    v: RECORD_VERSION,
    bucketId,
    key,
    versionId: '',
    backendVersionId,
    size: 0,
    etag: '',
    lastModified: at.getTime(),
    headers: {},
    userMeta: {},
    checksums: {},
    segments: [],
    deleteMarker: true,
  };
}

function notYet(what: string): S3Error {
  return S3Errors.notImplemented(`${what} through a gateway with a [backend] (not yet: see docs/gateway.md)`);
}

export class BackendStore implements ObjectStore {
  readonly streams: ObjectStreams;
  // Bucket names by id: the API names buckets by id below the router, the backend by name.
  private readonly names = new Map<string, string>();
  // Coffre buckets whose versioning is set (as their records last read said): version ids pass through.
  private readonly versioned = new Set<string>();
  // Uploads in progress and part tables, as read from the backend: neither changes once written.
  private readonly uploads = new Map<string, BackendUpload>();
  private readonly tables = new Map<string, TablePart[]>();
  // Plaintext sizes of multipart objects by backend key and ETag, for listings (docs/gateway.md).
  private readonly sizes = new Map<string, number>();
  // The first stored bytes of objects a GET is reading (readVersion), by the segments of their records: they
  // live as long as the request's record does.
  private readonly firstBytes = new WeakMap<Segment, Buffer>();

  constructor(
    private readonly client: S3Client,
    private readonly config: BackendConfig,
    private readonly records: SharedRecords,
    private readonly objects: ObjectRequests,
  ) {
    this.streams = {
      readVersion: (...args) => this.readVersion(...args),
      putObjectStream: (...args) => this.putObjectStream(...args),
      putPartStream: (...args) => this.putPartStream(...args),
      completeUploadStream: (...args) => this.completeUploadStream(...args),
      replaceMetadataStream: (...args) => this.replaceMetadataStream(...args),
      objectTags: (record) => this.records.objectTags(record.versionId),
    };
  }

  // ---- access keys and buckets: sealed records in the backend, shared by its gateways (records.ts)

  /** Checked at start: the records already in the backend open with this gateway's rpc_secret. */
  async checkRecords(): Promise<void> {
    try {
      await this.records.listKeys();
    } catch (err) {
      throw new UserError(
        `backend ${this.config.endpoint} bucket ${this.config.bucket}: ${errorMessage(err)}`,
      );
    }
  }

  createKey(name: string, allowCreateBucket: boolean) {
    return this.records.createKey(name, allowCreateBucket);
  }
  getKey(id: string) {
    return this.records.getKey(id);
  }
  findKey(idOrName: string) {
    return this.records.findKey(idOrName);
  }
  listKeys() {
    return this.records.listKeys();
  }
  setKeyCreateBucket(id: string, allowCreateBucket: boolean) {
    return this.records.setKeyCreateBucket(id, allowCreateBucket);
  }
  deleteKey(id: string) {
    return this.records.deleteKey(id);
  }
  async bucketByName(name: string) {
    return this.known(await this.records.bucketByName(name));
  }
  async listBuckets() {
    const buckets = await this.records.listBuckets();
    for (const b of buckets) this.known(b);
    return buckets;
  }
  async createBucket(name: string, owner?: string, objectLock?: boolean) {
    if (objectLock) throw notYet('object lock');
    return this.known(await this.records.createBucket(name, owner))!;
  }
  // Versions are the backend's: versioning a coffre bucket sets the backend bucket's (which all coffre
  // buckets in it share), and the bucket's record says its versions are to be shown. Object lock is not
  // passed through yet (docs/gateway.md, Limits).
  async setBucketVersioning(bucketId: string, state: VersioningState): Promise<BucketRecord> {
    if (state !== 'Enabled' && state !== 'Suspended') throw S3Errors.malformedXml();
    // The record first: a backend refusal then leaves the bucket's versions shown, not a versioned backend
    // bucket that a record says nothing of.
    const updated = await this.updateBucket(bucketId, (b) => ({ ...b, versioning: state }));
    this.known(updated);
    await this.client
      .send(
        new PutBucketVersioningCommand({
          Bucket: this.config.bucket,
          VersioningConfiguration: { Status: state },
        }),
      )
      .catch((err: unknown) => {
        const status = backendStatus(err);
        if (status === 403 || status === 501 || status === 400)
          throw S3Errors.notImplemented(
            `versioning: the storage backend refused to set the versioning of bucket ${this.config.bucket} (${status}); give the gateway's backend key the right to (s3:PutBucketVersioning), or enable it on the backend bucket yourself and then here`,
          );
        throw fromBackend(err);
      });
    return updated;
  }
  setBucketObjectLock(): Promise<BucketRecord> {
    return Promise.reject(notYet('object lock'));
  }
  // Lifecycle rules stay in the bucket's sealed record, applied by the gateways' own lifecycle worker (one at
  // a time: backend/lease.ts) on plaintext sizes and sealed tags, never passed to the backend.
  async setBucketLifecycle(bucketId: string, rules: LifecycleRule[] | undefined): Promise<BucketRecord> {
    return this.known(
      await this.updateBucket(bucketId, (b) => ({
        ...b,
        lifecycle: rules && rules.length > 0 ? rules : undefined,
      })),
    )!;
  }
  setObjectLock(): Promise<string> {
    return Promise.reject(notYet('object lock'));
  }
  // A version named by the backend's id (delete markers included), or without an id the current one. In a
  // bucket without versioning the only version is the current one, "null" to S3 clients.
  async getVersion(bucketId: string, key: string, versionId?: string): Promise<ObjectRecord | undefined> {
    if (versionId === undefined) return this.getObject(bucketId, key);
    if (!this.versioned.has(bucketId))
      return versionId === 'null' ? this.getObject(bucketId, key) : undefined;
    return this.headVersion(bucketId, key, versionId);
  }
  async setBucketPolicy(bucketId: string, policy: string | undefined) {
    return this.updateBucket(bucketId, (b) => {
      const { policy: _old, ...rest } = b;
      return typeof policy === 'string' ? { ...rest, policy } : rest;
    });
  }
  async setBucketCors(bucketId: string, cors: CorsRule[] | undefined) {
    return this.updateBucket(bucketId, (b) => ({ ...b, cors }));
  }
  async setBucketEncryption(bucketId: string, defaultEncryption: 'AES256' | undefined) {
    return this.updateBucket(bucketId, (b) => ({
      ...b,
      defaultEncryption: defaultEncryption === 'AES256' ? defaultEncryption : undefined,
    }));
  }
  async setBucketTags(bucketId: string, tags: Record<string, string> | undefined) {
    return this.updateBucket(bucketId, (b) => ({
      ...b,
      tags: tags && Object.keys(tags).length > 0 ? tags : undefined,
    }));
  }
  async setPermission(bucketId: string, keyId: string, perm: Permission) {
    return this.updateBucket(bucketId, (b) => {
      const permissions = { ...b.permissions };
      if (!perm.read && !perm.write && !perm.owner) delete permissions[keyId];
      else permissions[keyId] = perm;
      return { ...b, permissions };
    });
  }
  async deleteBucket(name: string) {
    // Whether the bucket is empty is the backend's to say.
    const listed = await guarded(
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.config.bucket,
          Prefix: bucketPrefix(this.config.prefix, name),
          MaxKeys: 1,
        }),
      ),
    );
    // In a versioned backend bucket, older versions and delete markers keep a bucket from being empty too.
    const versions = (listed.KeyCount ?? 0) > 0 ? undefined : await this.anyVersion(name);
    if ((listed.KeyCount ?? 0) > 0 || versions)
      throw new S3Error('BucketNotEmpty', 409, 'The bucket you tried to delete is not empty', {
        BucketName: name,
      });
    if (!(await this.records.bucketByName(name))) throw S3Errors.noSuchBucket(name);
    await this.records.deleteBucket(name);
  }

  private async anyVersion(name: string): Promise<boolean> {
    const bucket = await this.records.bucketByName(name);
    if (!bucket?.versioning) return false;
    const page = await guarded(
      this.client.send(
        new ListObjectVersionsCommand({
          Bucket: this.config.bucket,
          Prefix: bucketPrefix(this.config.prefix, name),
          MaxKeys: 1,
        }),
      ),
    );
    return (page.Versions?.length ?? 0) + (page.DeleteMarkers?.length ?? 0) > 0;
  }

  private async updateBucket(bucketId: string, change: (b: BucketRecord) => BucketRecord) {
    const name = await this.bucketName(bucketId);
    return this.records.updateBucket(name, (b) => {
      // A bucket deleted and made again under its name is another bucket.
      if (b.id !== bucketId) throw S3Errors.noSuchBucket(name);
      return change(b);
    });
  }

  private known(bucket: BucketRecord | undefined): BucketRecord | undefined {
    if (bucket) {
      this.names.set(bucket.id, bucket.name);
      if (bucket.versioning) this.versioned.add(bucket.id);
      else this.versioned.delete(bucket.id);
    }
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
    return this.headVersion(bucketId, key);
  }

  // The current object, or the backend's version `backendVersion` of it; undefined when there is none. A
  // version id the backend does not know for this key (another key's, a malformed one) is no version here.
  // With `firstBytes`, a GET of the object's first bytes stands for the HEAD: they are kept with the record's
  // segments for segmentSlices (an object stored empty has no bytes to ask for: a HEAD then).
  private async headVersion(
    bucketId: string,
    key: string,
    backendVersion?: string,
    firstBytes = false,
  ): Promise<ObjectRecord | undefined> {
    const stored = await this.objectKey(bucketId, key);
    const versioned = this.versioned.has(bucketId);
    let head: ObjectHead;
    let first: Buffer | undefined;
    try {
      if (firstBytes) {
        const got = await this.objects
          .get(stored, { range: { start: 0, end: FIRST_BYTES }, versionId: backendVersion })
          .catch((err: unknown) => {
            if (backendStatus(err) === 416) return undefined;
            throw err;
          });
        if (got) {
          first = await gathered(got.body, got.contentLength);
          head = got;
        } else head = await this.objects.head(stored, backendVersion);
      } else head = await this.objects.head(stored, backendVersion);
    } catch (err) {
      const status = backendStatus(err);
      if (backendVersion !== undefined && isDeleteMarker(err)) {
        const id = checkedBackendVersion(stored, backendVersion)!;
        return deleteMarker(bucketId, key, id, lastModifiedOf(err));
      }
      if (status === 404) return undefined;
      if (backendVersion !== undefined && status === 400) return undefined;
      throw fromBackend(err);
    }
    const headed = await this.headedRecord(bucketId, key, stored, head);
    const record = versioned
      ? atBackendVersion(headed, checkedBackendVersion(stored, head.versionId))
      : headed;
    if (first) for (const segment of record.segments) this.firstBytes.set(segment, first);
    return record;
  }

  // The version a GET is about to read, with the object's first bytes (see headVersion).
  private async readVersion(
    bucketId: string,
    key: string,
    versionId?: string,
  ): Promise<ObjectRecord | undefined> {
    if (versionId === undefined) return this.headVersion(bucketId, key, undefined, true);
    if (!this.versioned.has(bucketId))
      return versionId === 'null' ? this.headVersion(bucketId, key, undefined, true) : undefined;
    return this.headVersion(bucketId, key, versionId, true);
  }

  private async headedRecord(
    bucketId: string,
    key: string,
    stored: string,
    head: ObjectHead,
  ): Promise<ObjectRecord> {
    const versionId = versionIdOf(head.metadata);
    const table =
      isMultipart(head.metadata) && versionId ? await this.partTable(stored, versionId) : undefined;
    const record = headRecord(
      bucketId,
      key,
      {
        key: stored,
        size: head.totalLength,
        etag: head.etag,
        lastModified: head.lastModified,
        metadata: head.metadata,
      },
      table,
    );
    if (table) remember(this.sizes, `${stored}\n${head.etag}`, record.size);
    return record;
  }

  private async putObjectStream(
    object: StreamedObject,
    source: AsyncIterable<Buffer>,
    plainSize: number,
    sealer: BlockSealer,
    condition?: WriteCondition,
  ): Promise<ObjectRecord> {
    const stored = await this.objectKey(object.bucketId, object.key);
    const metadata = backendMetadata(object);
    // Tags first, under the new version id: the object is never visible without them.
    if (object.tags) await this.records.setObjectTags(object.versionId, object.tags);
    // Conditions are checked against the current object, then passed to the backend as its own ETag so that
    // a backend that honours conditional writes closes the gap between the check and the write.
    let ifMatch: string | undefined;
    if (condition && (condition.ifMatch !== undefined || condition.ifNoneMatch !== undefined)) {
      const current = await this.getObject(object.bucketId, object.key);
      checkWriteCondition(condition, current);
      ifMatch = condition.ifMatch !== undefined ? current?.segments[0]?.backend?.etag : undefined;
    }
    const sealedSize = sealer.sealedSize(plainSize, 0);
    // A small object is sealed whole before anything is sent: one write to the backend, and a body that fails
    // its checks (signature, digest, length) fails before the backend hears of it.
    const streamed = sealedSize > SMALL_OBJECT ? sealedBody(source, plainSize, sealer) : undefined;
    const body = streamed?.body ?? (await gatheredStream(sealStream(source, plainSize, sealer), sealedSize));
    let put;
    try {
      put = await this.objects.put(stored, body, {
        contentLength: sealedSize,
        contentType: 'application/octet-stream',
        metadata,
        ...(ifMatch ? { ifMatch: writeIfMatch(ifMatch) } : {}),
        ...(condition?.ifNoneMatch === '*' ? { ifNoneMatch: '*' } : {}),
        ...(streamed ? { signal: streamed.signal } : {}),
      });
    } catch (err) {
      streamed?.body.destroy();
      const failed = streamed?.failure();
      if (failed) throw failed;
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
    if (!put.etag) throw S3Errors.internal('the storage backend gave no ETag for a stored object');
    const record = headRecord(object.bucketId, object.key, {
      key: stored,
      size: sealedSize,
      etag: put.etag,
      lastModified: new Date(),
      metadata,
    });
    return this.versioned.has(object.bucketId)
      ? atBackendVersion(record, checkedBackendVersion(stored, put.versionId))
      : record;
  }

  // A copy of an object onto itself that keeps its stream: the backend copies the bytes (CopyObject with new
  // metadata), and only if the object is still the one read (CopySourceIfMatch on its backend ETag).
  private async replaceMetadataStream(object: StreamedObject, source: ObjectRecord): Promise<ObjectRecord> {
    const stored = await this.objectKey(object.bucketId, object.key);
    const segment = source.segments.length === 1 ? source.segments[0] : undefined;
    const at = segment?.backend;
    if (!segment || !at || at.key !== stored || at.offset !== 0 || segment.partNumber !== undefined)
      throw S3Errors.internal('only a single-stream object is copied onto itself in its backend');
    const metadata = backendMetadata(object);
    // The version id stays: its tags are the copy's (replaced, copied, or none).
    await this.records.setObjectTags(object.versionId, object.tags);
    let copied;
    try {
      copied = await this.client.send(
        new CopyObjectCommand({
          Bucket: this.config.bucket,
          Key: stored,
          CopySource: copySource(this.config.bucket, stored),
          CopySourceIfMatch: at.etag,
          MetadataDirective: 'REPLACE',
          ContentType: 'application/octet-stream',
          Metadata: metadata,
        }),
      );
    } catch (err) {
      if (backendStatus(err) === 412 || backendErrorCode(err) === 'PreconditionFailed')
        throw new S3Error(
          'ServiceUnavailable',
          503,
          'The object changed while it was being copied; please retry.',
        );
      if (backendStatus(err) === 404) throw S3Errors.noSuchKey(object.key);
      throw fromBackend(err);
    }
    const etag = copied.CopyObjectResult?.ETag;
    if (!etag) throw S3Errors.internal('the storage backend gave no ETag for a copied object');
    return headRecord(object.bucketId, object.key, {
      key: stored,
      size: segment.storedSize,
      etag,
      lastModified: copied.CopyObjectResult?.LastModified ?? new Date(),
      metadata,
    });
  }

  putObject(): Promise<string | undefined> {
    return Promise.reject(S3Errors.internal('a backend stores objects with putObjectStream'));
  }

  // In a versioned bucket, a delete without a version id is the backend's delete marker, and one with an id
  // removes that version of the backend's; without versioning only the current ("null") object is.
  async deleteObject(bucketId: string, key: string, versionId?: string): Promise<DeleteOutcome> {
    const stored = await this.objectKey(bucketId, key);
    if (!this.versioned.has(bucketId)) {
      if (versionId !== undefined && versionId !== 'null') return {};
      await guarded(this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: stored })));
      return {};
    }
    let out;
    try {
      out = await this.client.send(
        new DeleteObjectCommand({
          Bucket: this.config.bucket,
          Key: stored,
          ...(versionId !== undefined ? { VersionId: versionId } : {}),
        }),
      );
    } catch (err) {
      // A version the backend does not have (or cannot: a malformed id) is already gone, as in S3.
      if (versionId !== undefined && (backendStatus(err) === 404 || backendStatus(err) === 400))
        return { versionId };
      throw fromBackend(err);
    }
    const id = checkedBackendVersion(stored, out.VersionId) ?? versionId;
    return {
      ...(id !== undefined ? { versionId: id } : {}),
      ...(out.DeleteMarker ? { deleteMarker: true } : {}),
    };
  }

  async deleteObjects(bucketId: string, entries: DeleteEntry[]): Promise<DeleteEntryOutcome[]> {
    if (!this.versioned.has(bucketId)) {
      const current = entries.filter((e) => e.versionId === undefined || e.versionId === 'null');
      await this.deleteBackendKeys(await Promise.all(current.map((e) => this.objectKey(bucketId, e.key))));
      return entries.map((e) => ({ ...e }));
    }
    // Each entry as its own DeleteObject: the backend answers each with the marker or version it is about.
    return mapLimited(entries, LOOKUPS_IN_FLIGHT, async (e) => {
      try {
        return { ...e, ...(await this.deleteObject(bucketId, e.key, e.versionId)) };
      } catch (err) {
        if (!(err instanceof S3Error) || err.status === 503) throw err;
        return { ...e, error: { code: err.code, message: err.message } };
      }
    });
  }

  async setObjectTags(
    bucketId: string,
    key: string,
    tags: Record<string, string> | undefined,
    versionId?: string,
  ): Promise<string> {
    // Tags are kept by the version's own (coffre) version id: each backend version has its own.
    const version = await this.getVersion(bucketId, key, versionId);
    if (!version || version.deleteMarker)
      throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
    await this.records.setObjectTags(version.versionId, tags);
    return version.backendVersionId ?? 'null';
  }

  /**
   * Versions of a versioned bucket's keys as the backend lists them (ListObjectVersions), delete markers
   * included; sizes and ETags come from the listing as in listObjects, so no request per version but, once
   * per gateway, for a multipart version's part table.
   */
  async listVersions(
    bucketId: string,
    prefix: string,
    after: VersionCursor | undefined,
    limit: number,
  ): Promise<VersionEntry[]> {
    const base = bucketPrefix(this.config.prefix, await this.bucketName(bucketId));
    const out: VersionEntry[] = [];
    let keyMarker = after ? base + after.key : undefined;
    let versionMarker = after?.versionId;
    while (out.length < limit) {
      const page = await guarded(
        this.client.send(
          new ListObjectVersionsCommand({
            Bucket: this.config.bucket,
            Prefix: base + prefix,
            ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
            ...(keyMarker !== undefined && versionMarker !== undefined
              ? { VersionIdMarker: versionMarker }
              : {}),
            MaxKeys: Math.min(1000, limit - out.length),
          }),
        ),
      );
      // The backend gives versions and markers apart, each in key order, newest first within a key; dates
      // are to the second, so the latest (a marker just put on a version, say) is put first by its flag.
      type Listed = { item: { Key?: string; VersionId?: string; IsLatest?: boolean; LastModified?: Date } };
      const listed: (Listed & { marker: boolean; item: { Size?: number; ETag?: string } })[] = [
        ...(page.Versions ?? []).map((item) => ({ item, marker: false })),
        ...(page.DeleteMarkers ?? []).map((item) => ({ item, marker: true })),
      ];
      listed.sort(
        (a, b) =>
          (a.item.Key! < b.item.Key! ? -1 : a.item.Key! > b.item.Key! ? 1 : 0) ||
          Number(b.item.IsLatest === true) - Number(a.item.IsLatest === true) ||
          (b.item.LastModified?.getTime() ?? 0) - (a.item.LastModified?.getTime() ?? 0),
      );
      const entries = await mapLimited(listed, LOOKUPS_IN_FLIGHT, async ({ item, marker }) => {
        if (!item.Key?.startsWith(base) || !item.LastModified) return undefined;
        const key = item.Key.slice(base.length);
        const id = checkedBackendVersion(item.Key, item.VersionId) ?? 'null';
        if (marker)
          return {
            record: deleteMarker(bucketId, key, id, item.LastModified),
            isLatest: item.IsLatest === true,
          };
        const facts = { key: item.Key, size: item.Size, etag: item.ETag, lastModified: item.LastModified };
        const record = await this.listedObject(bucketId, key, facts, id);
        return record && { record: { ...record, backendVersionId: id }, isLatest: item.IsLatest === true };
      });
      for (const e of entries) if (e && out.length < limit) out.push(e);
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
      if (keyMarker === undefined) break;
    }
    return out;
  }

  // The record of a listed object (or of its backend version `backendVersion`), its size from the listing. A
  // multipart object's plaintext size needs its part table: looked up once per gateway, then known. Gone since
  // the listing, or not coffre's: undefined, left out. A backend that fails fails the listing.
  private async listedObject(
    bucketId: string,
    key: string,
    facts: BackendObjectFacts,
    backendVersion?: string,
  ): Promise<ObjectRecord | undefined> {
    if (!isMultipartEtag(facts.etag)) return listedRecord(bucketId, key, facts);
    const size =
      this.sizes.get(`${facts.key}\n${facts.etag}`) ??
      (
        await this.headVersion(bucketId, key, backendVersion).catch((err: unknown) => {
          if (err instanceof S3Error && err.status === 503) throw err;
          return undefined;
        })
      )?.size;
    return size === undefined ? undefined : listedRecord(bucketId, key, facts, size);
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
      const records = await mapLimited(listed.Contents ?? [], LOOKUPS_IN_FLIGHT, async (item) => {
        if (!item.Key?.startsWith(base)) return undefined;
        const facts = { key: item.Key, size: item.Size, etag: item.ETag, lastModified: item.LastModified };
        return this.listedObject(bucketId, item.Key.slice(base.length), facts);
      });
      for (const record of records) if (record) out.push(record);
      if (!listed.IsTruncated || !listed.NextContinuationToken) break;
      token = listed.NextContinuationToken;
    }
    return out;
  }

  // ---- multipart uploads (object-format.ts: the records beside a backend multipart upload)

  async createUpload(record: NewUpload): Promise<UploadRecord> {
    if (!record.encryption || !record.sealedMeta)
      throw S3Errors.internal('an upload stored in a backend must be encrypted');
    const uploadId = randomBytes(16).toString('hex');
    const stored = await this.objectKey(record.bucketId, record.key);
    const upload: BackendUpload = {
      uploadId,
      bucketId: record.bucketId,
      key: record.key,
      versionId: record.versionId,
      initiated: Date.now(),
      backendUploadId: '',
      encryption: record.encryption,
      sealedMeta: record.sealedMeta.toString('base64'),
      ...(record.checksumAlgorithm ? { checksumAlgorithm: record.checksumAlgorithm } : {}),
    };
    const metadata = uploadMetadata(upload);
    checkMetadataFits(metadata);
    // The object it makes keeps the upload's version id, and so these tags.
    if (record.tags) await this.records.setObjectTags(record.versionId, record.tags);
    const created = await guarded(
      this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.config.bucket,
          Key: stored,
          ContentType: 'application/octet-stream',
          Metadata: metadata,
        }),
      ),
    );
    if (!created.UploadId) throw S3Errors.internal('the storage backend gave no upload id');
    upload.backendUploadId = created.UploadId;
    await guarded(
      this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: uploadRecordKey(this.config.prefix, uploadId),
          Body: encodeUpload(upload),
          ContentType: 'application/json',
        }),
      ),
    );
    this.uploads.set(uploadId, upload);
    return this.uploadRecord(upload);
  }

  private uploadRecord(upload: BackendUpload): UploadRecord {
    return {
      v: RECORD_VERSION,
      uploadId: upload.uploadId,
      bucketId: upload.bucketId,
      key: upload.key,
      versionId: upload.versionId,
      initiated: upload.initiated,
      headers: {},
      userMeta: {},
      sealedMeta: Buffer.from(upload.sealedMeta, 'base64'),
      encryption: upload.encryption,
      ...(upload.checksumAlgorithm ? { checksumAlgorithm: upload.checksumAlgorithm } : {}),
    };
  }

  private async backendUpload(uploadId: string): Promise<BackendUpload> {
    if (!UPLOAD_ID.test(uploadId)) throw S3Errors.noSuchUpload(uploadId);
    const known = this.uploads.get(uploadId);
    if (known) return known;
    const text = await this.readText(uploadRecordKey(this.config.prefix, uploadId));
    if (text === undefined) throw S3Errors.noSuchUpload(uploadId);
    const upload = decodeUpload(text);
    if (upload.uploadId !== uploadId) throw S3Errors.noSuchUpload(uploadId);
    this.uploads.set(uploadId, upload);
    return upload;
  }

  async getUpload(bucketId: string, key: string, uploadId: string): Promise<UploadRecord> {
    const upload = await this.backendUpload(uploadId);
    if (upload.bucketId !== bucketId || upload.key !== key) throw S3Errors.noSuchUpload(uploadId);
    return this.uploadRecord(upload);
  }

  async listUploads(bucketId: string): Promise<UploadRecord[]> {
    const uploads = await this.allUploads();
    return uploads.filter((u) => u.bucketId === bucketId).map((u) => this.uploadRecord(u));
  }

  /** Every upload in progress, from its record under .coffre/uploads/ (each read once per gateway). */
  private async allUploads(): Promise<BackendUpload[]> {
    const base = stateKey(this.config.prefix, 'uploads') + '/';
    const ids: string[] = [];
    let token: string | undefined;
    do {
      // The delimiter leaves out each upload's part markers (under "<id>.parts/").
      const page = await guarded(
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: base,
            Delimiter: '/',
            ContinuationToken: token,
          }),
        ),
      );
      for (const item of page.Contents ?? []) {
        const id = item.Key?.slice(base.length);
        if (id && UPLOAD_ID.test(id)) ids.push(id);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const uploads = await mapLimited(ids, LOOKUPS_IN_FLIGHT, (id) =>
      this.backendUpload(id).catch((err: unknown) => {
        // Completed or aborted since the listing: not in progress.
        if (err instanceof S3Error && err.code === 'NoSuchUpload') return undefined;
        throw err;
      }),
    );
    return uploads
      .filter((u): u is BackendUpload => u !== undefined)
      .sort((a, b) => a.initiated - b.initiated);
  }

  /**
   * Aborts what uploads older than `maxAgeMs` left in the backend: those with a record (a client that never
   * completed, a gateway killed mid-upload), and the backend's own multipart uploads under this gateway's
   * prefix that no record names (a gateway killed between starting one and writing its record). Returns how
   * many it aborted; one that fails is left for the next sweep.
   */
  async sweepUploads(maxAgeMs: number, now = Date.now()): Promise<number> {
    let aborted = 0;
    const live = new Set<string>();
    for (const upload of await this.allUploads()) {
      if (now - upload.initiated < maxAgeMs) {
        live.add(upload.backendUploadId);
        continue;
      }
      await this.abortUpload(this.uploadRecord(upload));
      aborted++;
    }
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    do {
      const page = await guarded(
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix || undefined,
            KeyMarker: keyMarker,
            UploadIdMarker: idMarker,
          }),
        ),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || live.has(u.UploadId)) continue;
        if (now - u.Initiated.getTime() < maxAgeMs) continue;
        await guarded(
          this.client.send(
            new AbortMultipartUploadCommand({ Bucket: this.config.bucket, Key: u.Key, UploadId: u.UploadId }),
          ),
        ).catch((err: unknown) => {
          if (!(err instanceof S3Error) || err.status !== 500) throw err;
        });
        aborted++;
      }
      const more = page.IsTruncated === true;
      keyMarker = more ? page.NextKeyMarker : undefined;
      idMarker = more ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return aborted;
  }

  /** Sweeps abandoned uploads every `intervalMs` (and once at start); the returned function stops it. */
  startUploadSweeper(opts: {
    intervalMs: number;
    maxAgeMs: number;
    onSwept: (aborted: number) => void;
    onError: (err: Error) => void;
  }): () => void {
    let running: Promise<void> | undefined;
    const run = () => {
      running ??= this.sweepUploads(opts.maxAgeMs)
        .then((n) => {
          if (n > 0) opts.onSwept(n);
        })
        .catch((err: Error) => opts.onError(err))
        .finally(() => (running = undefined));
    };
    const timer = setInterval(run, opts.intervalMs);
    timer.unref();
    run();
    return () => clearInterval(timer);
  }

  private async putPartStream(
    record: UploadRecord,
    partNumber: number,
    source: AsyncIterable<Buffer>,
    plainSize: number,
    sealer: BlockSealer & { readonly header: Buffer },
  ): Promise<{ etag: string }> {
    const upload = await this.backendUpload(record.uploadId);
    const { body, failure, signal } = sealedBody(source, plainSize, sealer);
    let etag: string | undefined;
    try {
      const part = await this.client.send(
        new UploadPartCommand({
          Bucket: this.config.bucket,
          Key: await this.objectKey(upload.bucketId, upload.key),
          UploadId: upload.backendUploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: sealer.sealedSize(plainSize, 0),
        }),
        { abortSignal: signal },
      );
      etag = part.ETag;
    } catch (err) {
      body.destroy();
      throw (
        failure() ?? (backendStatus(err) === 404 ? S3Errors.noSuchUpload(upload.uploadId) : fromBackend(err))
      );
    }
    if (!etag) throw S3Errors.internal('the storage backend gave no ETag for a part');
    // The part's stream header, kept where Complete finds it (the backend lists parts without their bytes).
    await guarded(
      this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: partMarkerKey(this.config.prefix, upload.uploadId, partNumber, etag, sealer.header),
          Body: Buffer.alloc(0),
        }),
      ),
    );
    return { etag: coffrePartEtag(etag) };
  }

  /** The parts the backend holds for an upload, with the stream header each was sealed with. */
  private async uploadedParts(
    upload: BackendUpload,
  ): Promise<Map<number, { etag: string; size: number; header?: Buffer }>> {
    const stored = await this.objectKey(upload.bucketId, upload.key);
    const parts = new Map<number, { etag: string; size: number; header?: Buffer }>();
    let marker: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListPartsCommand({
            Bucket: this.config.bucket,
            Key: stored,
            UploadId: upload.backendUploadId,
            PartNumberMarker: marker,
          }),
        )
        .catch((err: unknown) => {
          throw backendStatus(err) === 404 ? S3Errors.noSuchUpload(upload.uploadId) : fromBackend(err);
        });
      for (const p of page.Parts ?? [])
        if (p.PartNumber && p.ETag && p.Size !== undefined)
          parts.set(p.PartNumber, { etag: p.ETag, size: p.Size });
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker);
    const markers = partMarkersPrefix(this.config.prefix, upload.uploadId);
    for await (const key of this.listBackendKeys(markers)) {
      const m = parsePartMarker(key.slice(markers.length));
      const part = m && parts.get(m.partNumber);
      if (part && m.etagDigest === markerDigestOf(part.etag)) part.header = m.header;
    }
    return parts;
  }

  private async completeUploadStream(
    record: UploadRecord,
    requested: { partNumber: number; etag: string }[],
  ): Promise<ObjectRecord> {
    const upload = await this.backendUpload(record.uploadId);
    const uploaded = await this.uploadedParts(upload);
    const table: TablePart[] = [];
    const chosen: { PartNumber: number; ETag: string }[] = [];
    requested.forEach((r, i) => {
      const part = uploaded.get(r.partNumber);
      if (!part || !part.header || !partEtagNames(r.etag, part.etag)) throw invalidPart(r);
      const plain = plainSizeOf(part.size);
      if (plain === undefined) throw invalidPart(r);
      if (i < requested.length - 1 && plain < MIN_PART_SIZE)
        throw new S3Error(
          'EntityTooSmall',
          400,
          'Your proposed upload is smaller than the minimum allowed object size.',
          {
            PartNumber: String(r.partNumber),
            ProposedSize: String(plain),
            MinSizeAllowed: String(MIN_PART_SIZE),
          },
        );
      table.push({
        partNumber: r.partNumber,
        storedSize: part.size,
        header: part.header,
        etag: coffrePartEtag(part.etag),
      });
      chosen.push({ PartNumber: r.partNumber, ETag: part.etag });
    });
    // The table first: the object is never visible without what reading it needs.
    await guarded(
      this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: partTableKey(this.config.prefix, upload.versionId),
          Body: encodePartTable(table),
          ContentType: 'application/json',
        }),
      ),
    );
    const stored = await this.objectKey(upload.bucketId, upload.key);
    const done = await this.client
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: this.config.bucket,
          Key: stored,
          UploadId: upload.backendUploadId,
          MultipartUpload: { Parts: chosen },
        }),
      )
      .catch((err: unknown) => {
        throw backendStatus(err) === 404 ? S3Errors.noSuchUpload(upload.uploadId) : fromBackend(err);
      });
    // Some engines (Ceph RGW) answer a Complete without the object's ETag: a HEAD gives it.
    const etag =
      done.ETag ||
      (await guarded(this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: stored }))))
        .ETag;
    if (!etag) throw S3Errors.internal('the storage backend gave no ETag for a completed upload');
    await this.forgetUpload(upload);
    const version = this.versioned.has(upload.bucketId)
      ? checkedBackendVersion(stored, done.VersionId)
      : undefined;
    return atBackendVersion(
      headRecord(
        upload.bucketId,
        upload.key,
        {
          key: stored,
          size: table.reduce((n, p) => n + p.storedSize, 0),
          etag,
          lastModified: new Date(),
          metadata: uploadMetadata(upload),
        },
        table,
      ),
      version,
    );
  }

  // An upload's records go once it is completed or aborted (a failure here leaves only a few small objects).
  private async forgetUpload(upload: BackendUpload): Promise<void> {
    this.uploads.delete(upload.uploadId);
    const keys = [uploadRecordKey(this.config.prefix, upload.uploadId)];
    for await (const key of this.listBackendKeys(partMarkersPrefix(this.config.prefix, upload.uploadId)))
      keys.push(key);
    await this.deleteBackendKeys(keys).catch(() => undefined);
  }

  async putPart(): Promise<void> {
    return Promise.reject(S3Errors.internal('a backend stores parts with putPartStream'));
  }

  async listParts(uploadId: string): Promise<PartRecord[]> {
    const upload = await this.backendUpload(uploadId);
    const parts = await this.uploadedParts(upload);
    return [...parts.entries()]
      .sort(([a], [b]) => a - b)
      .map(([partNumber, p]) => ({
        v: RECORD_VERSION,
        partNumber,
        etag: coffrePartEtag(p.etag),
        lastModified: Date.now(),
        segment: { plainSize: plainSizeOf(p.size) ?? 0, storedSize: p.size, blocks: [] },
        checksums: {},
      }));
  }

  completeUpload(): Promise<string | undefined> {
    return Promise.reject(S3Errors.internal('a backend completes uploads with completeUploadStream'));
  }

  async abortUpload(record: UploadRecord): Promise<void> {
    const upload = await this.backendUpload(record.uploadId);
    await this.client
      .send(
        new AbortMultipartUploadCommand({
          Bucket: this.config.bucket,
          Key: await this.objectKey(upload.bucketId, upload.key),
          UploadId: upload.backendUploadId,
        }),
      )
      .catch((err: unknown) => {
        if (backendStatus(err) !== 404) throw fromBackend(err);
      });
    await this.forgetUpload(upload);
    // Tags given at CreateMultipartUpload belong to no object now.
    await this.records.setObjectTags(upload.versionId, undefined).catch(() => undefined);
  }

  // ---- the gateway's own small objects in the backend

  private async readText(key: string): Promise<string | undefined> {
    try {
      const got = await this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: key }));
      return await got.Body!.transformToString('utf8');
    } catch (err) {
      if (backendStatus(err) === 404) return undefined;
      throw fromBackend(err);
    }
  }

  private async *listBackendKeys(prefix: string): AsyncGenerator<string> {
    let token: string | undefined;
    do {
      const page = await guarded(
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: prefix, ContinuationToken: token }),
        ),
      );
      for (const item of page.Contents ?? []) if (item.Key) yield item.Key;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async deleteBackendKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const out = await guarded(
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.config.bucket,
            Delete: { Objects: keys.slice(i, i + DELETE_BATCH).map((Key) => ({ Key })), Quiet: true },
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

  private async partTable(key: string, versionId: string): Promise<TablePart[]> {
    const known = this.tables.get(versionId);
    if (known) return known;
    const text = await this.readText(partTableKey(this.config.prefix, versionId));
    if (text === undefined) throw S3Errors.internal(`The part table of ${key} is missing from the backend.`);
    const table = decodePartTable(text, key);
    remember(this.tables, versionId, table);
    return table;
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
    // What the GET that found the object fetched already is not asked for again. Each slice is a buffer of
    // its own: the thread that decrypts it is given it.
    const first = this.firstBytes.get(segment);
    if (first && at.offset + start < first.length) {
      const upTo = Math.min(end, first.length - at.offset);
      const slice = Buffer.allocUnsafeSlow(upTo - start);
      first.copy(slice, 0, at.offset + start, at.offset + upTo);
      yield slice;
      start = upTo;
      if (start >= end) return;
    }
    let body;
    try {
      const got = await this.objects.get(at.key, {
        range: { start: at.offset + start, end: at.offset + end },
        ifMatch: at.etag,
        ...(at.versionId !== undefined ? { versionId: at.versionId } : {}),
      });
      body = got.body;
      if (got.contentLength !== end - start) {
        body.destroy();
        throw S3Errors.internal(
          `the storage backend sent ${got.contentLength} bytes for a range of ${end - start}`,
        );
      }
    } catch (err) {
      if (backendStatus(err) === 412)
        throw new S3Error(
          'ServiceUnavailable',
          503,
          'The object changed while it was being read; please retry.',
        );
      throw fromBackend(err);
    }
    // The HTTP client's pieces (tens of KiB, in memory it may share) are gathered into buffers of this store's
    // own: each then moves to the thread that decrypts it without a copy, in one message per READ_PIECE.
    let gathered = Buffer.allocUnsafeSlow(Math.min(READ_PIECE, end - start));
    let filled = 0;
    let left = end - start;
    try {
      for await (const piece of body as AsyncIterable<Buffer>) {
        let bytes = piece;
        while (bytes.length > 0) {
          const n = Math.min(bytes.length, gathered.length - filled);
          bytes.copy(gathered, filled, 0, n);
          filled += n;
          bytes = bytes.subarray(n);
          if (filled === gathered.length) {
            left -= filled;
            yield gathered;
            gathered = Buffer.allocUnsafeSlow(Math.min(READ_PIECE, Math.max(left, 1)));
            filled = 0;
          }
        }
      }
      if (filled > 0) yield gathered.subarray(0, filled);
    } catch (err) {
      throw fromBackend(err);
    } finally {
      body.destroy();
    }
  }
}
