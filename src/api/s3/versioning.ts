// api/s3/versioning: PutBucketVersioning and GetBucketVersioning, and what every versioned operation shares —
// the `versionId` a request names and the `x-amz-version-id` its answer carries.
import { BACKEND_VERSION_ID, s3VersionId, type BucketRecord, type ObjectRecord } from '../../model/types.js';
import { S3Errors } from '../../util/s3-error.js';
import type { BucketContext, S3Context } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asText, parseXml } from './xml.js';

/** S3 version ids here: "null", or the 32 hex digits of a version coffre made. */
const VERSION_ID = /^(null|[0-9a-f]{32})$/;

/**
 * A version id from a request (query, header or XML), checked: InvalidArgument when it cannot be one. With
 * `backend`, one of an S3 backend's (the store's `streams.versionIds`), which the backend store checks again.
 */
export function checkedVersionId(value: string, argumentName = 'versionId', backend = false): string {
  if (!(backend ? BACKEND_VERSION_ID : VERSION_ID).test(value))
    throw S3Errors.invalidArgument('Invalid version id specified', {
      ArgumentName: argumentName,
      ArgumentValue: value,
    });
  return value;
}

/** The `versionId` query parameter, if given. */
export function versionIdParam(ctx: S3Context): string | undefined {
  const v = ctx.query.get('versionId');
  return v === null ? undefined : checkedVersionId(v, 'versionId', ctx.store.streams !== undefined);
}

/** Says which version an answer is about, in a bucket that has (or had) versioning, as S3 does. */
export function setVersionHeader(ctx: S3Context, bucket: BucketRecord, record: ObjectRecord): void {
  if (bucket.versioning) ctx.res.setHeader('x-amz-version-id', s3VersionId(record));
}

export async function getBucketVersioning(ctx: BucketContext): Promise<void> {
  const state = ctx.bucket.versioning;
  sendXml(ctx.res, 200, 'VersioningConfiguration', state ? { Status: state } : {});
}

// Versioning, once enabled, can be suspended but never unset (nor suspended on an object lock bucket).
export async function putBucketVersioning(ctx: BucketContext): Promise<void> {
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'VersioningConfiguration');
  const status = asText(doc.Status);
  if (asText(doc.MfaDelete) === 'Enabled') throw S3Errors.notImplemented('MFA delete');
  if (status !== 'Enabled' && status !== 'Suspended') throw S3Errors.malformedXml();
  await ctx.store.setBucketVersioning(ctx.bucket.id, status);
  sendEmpty(ctx.res, 200);
}
