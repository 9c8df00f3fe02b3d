// model: the records coffre keeps about buckets, access keys, objects and multipart uploads. Stored records
// carry a format version (`v`) so they can be migrated.
import type { BlockHash } from '../block/block-store.js';

export const RECORD_VERSION = 1;

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
