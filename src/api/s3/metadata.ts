// api/s3/metadata: an object's stored headers and user metadata, sealed when the object is encrypted.
import type { ObjectRecord } from '../../model/types.js';
import type { RequestEncryption } from './encryption.js';

export interface ObjectMetadata {
  headers: Record<string, string>;
  userMeta: Record<string, string>;
}

export function openMetadata(
  record: Pick<ObjectRecord, 'headers' | 'userMeta' | 'sealedMeta'>,
  _enc: RequestEncryption,
): ObjectMetadata {
  return { headers: record.headers, userMeta: record.userMeta };
}
