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
import { MissingObjectError, type ObjectStore } from './store.js';

/** Objects at least this big go up in multipart uploads (git-annex's partsize plays the same role). */
const DEFAULT_PART_SIZE = 64 * 1024 * 1024;
const UUID_OBJECT = 'annex-uuid';

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
