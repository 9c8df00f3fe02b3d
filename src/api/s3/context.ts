// api/s3/context: what a handler knows about the request it serves.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { CoffreConfig } from '../../config/config.js';
import type { ObjectStore } from '../../model/store.js';
import type { AccessKeyRecord, BucketRecord, Permission } from '../../model/types.js';
import { S3Errors } from '../../util/s3-error.js';
import type { BucketRight } from '../../model/model.js';
import type { Access } from './authorize.js';
import type { SseS3Keys } from '../../sse/sse-s3-keys.js';

export interface RequestBody {
  // The payload with transfer encodings (aws-chunked) removed; errors if a signature or digest fails.
  stream: Readable;
  // Digests of the payload, available once `stream` has ended without error.
  digests(): { md5: Buffer; checksums: Record<string, string> };
}

export interface S3Context {
  req: IncomingMessage;
  res: ServerResponse;
  store: ObjectStore;
  config: CoffreConfig;
  requestId: string;
  method: string;
  bucketName?: string;
  key?: string;
  query: URLSearchParams;
  secure: boolean;
  fromLoopback: boolean;
  // The key that signed the request; undefined for an anonymous one (let in by a bucket policy only).
  accessKey: AccessKeyRecord | undefined;
  // The node's SSE-S3 master keys (absent where SSE-S3 is not served).
  sseS3?: SseS3Keys;
  // md5: false skips hashing the payload with MD5 unless Content-MD5 asks for it (an SSE-C object's ETag is
  // random, so computing its plaintext's MD5 would cost time for nothing); digests().md5 is then empty.
  body(opts?: { md5?: boolean }): RequestBody;
}

/** What a handler of an operation of the key's own account knows (ListBuckets, CreateBucket): its key. */
export interface AccountContext extends S3Context {
  accessKey: AccessKeyRecord;
}

/**
 * What a handler of an operation on a bucket knows: the bucket, resolved and allowed before the handler runs
 * (router.ts AUTHORIZATION), and the permissions the request's key holds on it.
 */
export interface BucketContext extends S3Context {
  bucketName: string;
  bucket: BucketRecord;
  permission: Permission;
  // Whether the request may also do `access` (an action on an object, or on the bucket), holding `need` or
  // granted it by the bucket policy: for operations checked object by object (DeleteObjects).
  may(access: Access, need: BucketRight): Promise<boolean>;
}

/**
 * A copy's handler also knows its source: a bucket the key may read, the object key named there, and the
 * version (S3's id) if one is named.
 */
export interface CopyContext extends BucketContext {
  source: { bucket: BucketRecord; key: string; versionId?: string };
}

export function header(ctx: S3Context, name: string): string | undefined {
  const v = ctx.req.headers[name];
  if (Array.isArray(v)) return v.join(',');
  return v;
}

export function requireKey(ctx: S3Context): string {
  if (ctx.key === undefined) throw S3Errors.invalidRequest('an object key is required');
  return ctx.key;
}
