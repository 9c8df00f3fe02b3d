// model: the records coffre keeps about buckets, access keys, objects and multipart uploads. Stored records
// carry a format version (`v`) so they can be migrated.
import type { BlockHash } from '../block/block-store.js';

// 1: records written before versioning (an object record of version 1 is its key's "null" version).
// 2: object records say whether they are the null version (`nullVersion`) and may be delete markers.
export const RECORD_VERSION = 2;

/** A bucket's versioning state once set (PutBucketVersioning); a bucket never set has none. */
export type VersioningState = 'Enabled' | 'Suspended';

export type LockMode = 'GOVERNANCE' | 'COMPLIANCE';

/** A version's retention: no one removes it before `until` (ms); in GOVERNANCE mode, unless allowed to bypass. */
export interface Retention {
  mode: LockMode;
  until: number;
}

/** The retention a bucket gives each new version that asks for none (PutObjectLockConfiguration). */
export interface DefaultRetention {
  mode: LockMode;
  days?: number;
  years?: number;
}

export interface ObjectLockConfig {
  // Object lock, once enabled on a bucket, stays enabled (as in S3).
  enabled: true;
  rule?: DefaultRetention;
}

/** S3's limit on a bucket policy document (BucketRecord.policy). */
export const MAX_BUCKET_POLICY_BYTES = 20 * 1024;

export interface Permission {
  read: boolean;
  write: boolean;
  owner: boolean;
}

export interface CorsRule {
  id?: string;
  allowedOrigins: string[];
  allowedMethods: string[];
  allowedHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds?: number;
}

/** Which versions a lifecycle rule applies to: all of its conditions hold. */
export interface LifecycleFilter {
  prefix?: string;
  tags?: Record<string, string>;
  sizeGreaterThan?: number;
  sizeLessThan?: number;
}

/** One rule of a bucket's lifecycle configuration (PutBucketLifecycleConfiguration); times in ms. */
export interface LifecycleRule {
  id: string;
  enabled: boolean;
  filter: LifecycleFilter;
  expiration?: { days?: number; date?: number; expiredObjectDeleteMarker?: boolean };
  noncurrentExpiration?: { noncurrentDays?: number; newerNoncurrentVersions?: number };
  abortIncompleteUploadDays?: number;
}

export interface BucketRecord {
  v: number;
  id: string;
  name: string;
  createdAt: number;
  permissions: Record<string, Permission>; // by access key id
  cors?: CorsRule[];
  // Default encryption of new objects (PutBucketEncryption): SSE-S3 unless a request asks for SSE-C.
  defaultEncryption?: 'AES256';
  tags?: Record<string, string>;
  versioning?: VersioningState;
  objectLock?: ObjectLockConfig;
  lifecycle?: LifecycleRule[];
  // The bucket policy (PutBucketPolicy) as its owner wrote it: JSON text, checked before it was stored and
  // parsed again where it is used (api/s3/policy.ts).
  policy?: string;
}

export interface AccessKeyRecord {
  v: number;
  id: string;
  name: string;
  secret: string;
  createdAt: number;
  allowCreateBucket: boolean;
}

export interface BlockRef {
  hash: BlockHash;
  size: number;
}

// A run of stored bytes: one for a simple PUT, one per part for a multipart upload. Each segment is
// independently encrypted when the object is, so `plainSize` and `storedSize` can differ.
export interface Segment {
  plainSize: number;
  storedSize: number;
  blocks: BlockRef[];
  inline?: Buffer;
  // The encrypted stream's header (version and salt), kept here so range reads need not fetch it.
  cryptoHeader?: Buffer;
  partNumber?: number;
  etag?: string;
  // Where the bytes are when an S3 backend holds them (backend/): in that backend object, from `offset`,
  // read only while the object's backend ETag is still `etag`.
  // `versionId`, when the backend bucket is versioned, names the backend's version read.
  backend?: { key: string; etag: string; offset: number; versionId?: string };
}

export interface ObjectRecord {
  v: number;
  bucketId: string;
  key: string;
  versionId: string;
  size: number;
  etag: string; // quoted, as returned in ETag headers
  lastModified: number;
  // Content-Type, Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires
  headers: Record<string, string>;
  userMeta: Record<string, string>; // x-amz-meta-* without the prefix; empty when sealed
  sealedMeta?: Buffer; // user metadata and headers, encrypted (see sse/)
  checksums: Record<string, string>; // e.g. { CRC32: 'base64' }
  encryption?: Record<string, unknown>; // opaque to the model: what sse/ needs to decrypt (never key material)
  segments: Segment[];
  tags?: Record<string, string>; // object tags, in the clear (api/s3/tagging.ts)
  // The multipart upload that made this object, set by CompleteMultipartUpload only: a repeated Complete of
  // it answers as the first did while this record is the key's current one. Absent in older records.
  uploadId?: string;
  // Set by the model as it stores a version (v2): the key's null version, written while the bucket's versioning
  // was unset or suspended. Its `versionId` still names it for encryption (sse/ derives keys from it), but S3
  // calls it "null" (s3VersionId).
  nullVersion?: boolean;
  // A delete marker: a version with no data, which makes the key look deleted while it is the current one.
  deleteMarker?: boolean;
  retention?: Retention;
  legalHold?: boolean;
  // The version id an S3 backend gave this version (backend/, a versioned backend bucket): what S3 clients
  // see in place of `versionId`, which stays the one its keys derive from.
  backendVersionId?: string;
}

/**
 * A version id a versioned S3 backend bucket gives (backend/), which a gateway passes through: opaque to
 * coffre, made of the characters AWS, Ceph RGW, MinIO and Garage use ("+", "/" and "=" in AWS's ids).
 */
export const BACKEND_VERSION_ID = /^[A-Za-z0-9._+/=-]{1,1024}$/;

/** The version id S3 clients see for a record: "null" for the null version (and for every v1 record). */
export function s3VersionId(record: ObjectRecord): string {
  if (record.backendVersionId !== undefined) return record.backendVersionId;
  return record.v < 2 || record.nullVersion ? 'null' : record.versionId;
}

/** Whether a version may not be removed now (`now` is the real time, never a simulated clock). */
export function isProtected(record: ObjectRecord, now: number, bypassGovernance: boolean): boolean {
  if (record.legalHold) return true;
  if (!record.retention || record.retention.until <= now) return false;
  return record.retention.mode === 'COMPLIANCE' || !bypassGovernance;
}

export interface UploadRecord {
  v: number;
  uploadId: string;
  bucketId: string;
  key: string;
  versionId: string;
  initiated: number;
  headers: Record<string, string>;
  userMeta: Record<string, string>;
  sealedMeta?: Buffer;
  encryption?: Record<string, unknown>;
  checksumAlgorithm?: string;
  tags?: Record<string, string>; // given at CreateMultipartUpload, the object's once completed
  retention?: Retention; // object lock asked for at CreateMultipartUpload, the object's once completed
  legalHold?: boolean;
}

export interface PartRecord {
  v: number;
  partNumber: number;
  etag: string;
  lastModified: number;
  segment: Segment;
  checksums: Record<string, string>; // empty for a part of an encrypted upload
  sealed?: Buffer; // what an encrypted part keeps of its plaintext (MD5, checksums), sealed (see sse/)
}
