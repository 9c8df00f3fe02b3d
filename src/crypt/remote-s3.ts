// crypt/remote-s3: any S3 endpoint as git-annex's S3 special remote lays it out — `fileprefix + name`, flat, chunks
// as separate objects, and an `annex-uuid` object naming the remote that owns the bucket/prefix.
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { UserError } from '../util/errors.js';
import type { S3Location } from './config.js';
import type { S3Credentials } from './creds.js';
import { MissingObjectError, ObjectTooLargeError, type ObjectStore, type VersionedObject } from './store.js';

/** Objects at least this big go up in multipart uploads (git-annex's partsize plays the same role). */
const DEFAULT_PART_SIZE = 64 * 1024 * 1024;
const UUID_OBJECT = 'annex-uuid';
/** Written twice to learn whether the endpoint honours If-Match on PUT (AWS does since 2024; not every store). */
const CAS_PROBE_OBJECT = 'coffre-cas-probe';
const NO_SUCH_ETAG = '"00000000000000000000000000000000"';

function isPreconditionFailed(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false;
  const status = err.$metadata.httpStatusCode;
  return status === 412 || status === 409 || err.name === 'PreconditionFailed';
}

function isNotFound(err: unknown): boolean {
  if (err instanceof S3ServiceException) {
    return err.$metadata.httpStatusCode === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound';
  }
  return false;
}

export class S3Store implements ObjectStore {
  private readonly client: S3Client;

  constructor(
    readonly location: S3Location,
    creds: S3Credentials | null,
  ) {
    this.client = new S3Client({
      endpoint: location.endpoint,
      region: location.region,
      forcePathStyle: location.pathStyle,
      ...(creds ? { credentials: creds } : {}),
    });
  }

  get description(): string {
    return `s3 ${this.location.endpoint ?? 'aws'}/${this.location.bucket}/${this.location.prefix}`;
  }

  private key(name: string): string {
    return this.location.prefix + name;
  }

  async put(name: string, data: AsyncIterable<Buffer>, size: number): Promise<void> {
    const partSize = this.location.partSize ?? DEFAULT_PART_SIZE;
    if (size < partSize) {
      const parts: Buffer[] = [];
      for await (const c of data) parts.push(c);
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.location.bucket,
          Key: this.key(name),
          Body: Buffer.concat(parts),
        }),
      );
      return;
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.location.bucket, Key: this.key(name), Body: Readable.from(data) },
      partSize,
      queueSize: 2,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async *get(name: string): AsyncIterable<Buffer> {
    let body: AsyncIterable<Uint8Array>;
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(name) }),
      );
      body = r.Body as unknown as AsyncIterable<Uint8Array>;
    } catch (err) {
      if (isNotFound(err)) throw new MissingObjectError(name, this.description);
      throw err;
    }
    for await (const c of body) yield Buffer.from(c.buffer, c.byteOffset, c.byteLength);
  }

  async has(name: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.key(name) }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async getVersioned(name: string, limit: number): Promise<VersionedObject | null> {
    let r;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(name) }));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const body = r.Body as unknown as AsyncIterable<Uint8Array> & { destroy?: () => void };
    if ((r.ContentLength ?? 0) > limit) {
      body.destroy?.();
      throw new ObjectTooLargeError(name, this.description, limit);
    }
    const parts: Buffer[] = [];
    let total = 0;
    for await (const c of body) {
      total += c.byteLength;
      if (total > limit) {
        body.destroy?.();
        throw new ObjectTooLargeError(name, this.description, limit);
      }
      parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    }
    return { data: Buffer.concat(parts), version: r.ETag ?? '' };
  }

  private casSupport: Promise<boolean> | undefined;

  /** Whether the endpoint refuses a PUT whose If-Match does not hold (learnt once, on a probe object). */
  compareAndSwap(): Promise<boolean> {
    this.casSupport ??= (async () => {
      const params = { Bucket: this.location.bucket, Key: this.key(CAS_PROBE_OBJECT), Body: 'probe' };
      await this.client.send(new PutObjectCommand(params));
      let honoured: boolean;
      try {
        await this.client.send(new PutObjectCommand({ ...params, IfMatch: NO_SUCH_ETAG }));
        honoured = false; // the write went through: the condition was ignored
      } catch (err) {
        // 412: honoured. Any other refusal of the header (501 NotImplemented, 400) means no support either.
        if (!(err instanceof S3ServiceException)) throw err;
        honoured = isPreconditionFailed(err);
      }
      await this.remove(CAS_PROBE_OBJECT).catch(() => {});
      return honoured;
    })();
    return this.casSupport;
  }

  async putIfUnchanged(name: string, data: Buffer, expected: string | null): Promise<string | null> {
    const params = { Bucket: this.location.bucket, Key: this.key(name), Body: data };
    if (await this.compareAndSwap()) {
      try {
        const r = await this.client.send(
          new PutObjectCommand({ ...params, ...(expected ? { IfMatch: expected } : { IfNoneMatch: '*' }) }),
        );
        return r.ETag ?? '';
      } catch (err) {
        if (isPreconditionFailed(err)) return null;
        throw err;
      }
    }
    // No conditional writes: re-read just before writing, which leaves a window of one round trip.
    const current = await this.getVersioned(name, Number.MAX_SAFE_INTEGER);
    if ((current?.version ?? null) !== expected) return null;
    const r = await this.client.send(new PutObjectCommand(params));
    return r.ETag ?? '';
  }

  async remove(name: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(name) }));
  }

  /** Claims the bucket/prefix for `uuid` like git-annex's initremote; refuses one owned by another remote. */
  async claim(uuid: string): Promise<void> {
    await this.client.send(new CreateBucketCommand({ Bucket: this.location.bucket })).catch(() => {});
    const existing = await this.readUuid();
    if (existing && existing !== uuid) {
      throw new UserError(`${this.description} already belongs to git-annex remote ${existing}`);
    }
    if (!existing) {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.location.bucket, Key: this.key(UUID_OBJECT), Body: uuid }),
      );
    }
  }

  private async readUuid(): Promise<string | null> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(UUID_OBJECT) }),
      );
      return (await r.Body!.transformToString()).trim();
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  close(): void {
    this.client.destroy();
  }
}
