// api/s3/authorize: the one check of a key's right to the buckets a request names, made by the server before
// any handler runs; router.ts AUTHORIZATION says what each operation needs.
import { grants, type BucketRight } from '../../model/model.js';
import type { AccessKeyRecord, BucketRecord, Permission } from '../../model/types.js';
import { S3Errors } from '../../util/s3-error.js';

export interface AllowedBucket {
  bucket: BucketRecord;
  permission: Permission;
}

/**
 * The bucket named `name` if `key` holds `need` on it. A key without the right is refused with AccessDenied
 * whether or not the bucket exists, so that it learns nothing of other keys' buckets; only a key that may
 * create buckets is told NoSuchBucket (CreateBucket would tell it as much).
 */
export function allowedBucket(
  bucket: BucketRecord | undefined,
  name: string,
  key: AccessKeyRecord,
  need: BucketRight,
): AllowedBucket {
  if (!bucket) throw key.allowCreateBucket ? S3Errors.noSuchBucket(name) : S3Errors.accessDenied();
  const permission = bucket.permissions[key.id];
  if (!grants(permission, need)) throw S3Errors.accessDenied();
  return { bucket, permission };
}
