// api/s3/metadata: an object's stored headers and user metadata — as stored for plaintext objects, or as
// opened with the request's key for encrypted ones.
import type { ObjectRecord } from '../../model/types.js';
import type { RequestEncryption } from './encryption.js';

export interface ObjectMetadata {
  headers: Record<string, string>;
  userMeta: Record<string, string>;
  // Checksums of the plaintext: kept sealed with the rest for encrypted objects, as they describe the content.
  checksums?: Record<string, string>;
}

export function openMetadata(
  record: Pick<ObjectRecord, 'headers' | 'userMeta'> & { checksums?: Record<string, string> },
  enc: RequestEncryption,
): ObjectMetadata {
  return enc.metadata ?? { headers: record.headers, userMeta: record.userMeta, checksums: record.checksums };
}
