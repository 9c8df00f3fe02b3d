// api/s3/bucket-policy: PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy and GetBucketPolicyStatus. The
// document is checked whole (policy.ts) before it is stored, and kept as its owner wrote it; authorize.ts
// applies it to every request on the bucket.
import { S3Error } from '../../util/s3-error.js';
import type { BucketContext } from './context.js';
import type { MetadataStore } from '../../model/store.js';
import { isPublic, malformedPolicy, parsePolicy, principalKeyIds, type BucketPolicy } from './policy.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { storedPolicy } from './authorize.js';

// A body up to this size is read and refused as a policy too large; a larger one is not worth reading.
const MAX_BODY_READ = 64 * 1024;

function noBucketPolicy(): S3Error {
  return new S3Error('NoSuchBucketPolicy', 404, 'The bucket policy does not exist', {});
}

export async function putBucketPolicy(ctx: BucketContext): Promise<void> {
  const body = await readSmallBody(ctx, MAX_BODY_READ);
  const text = body.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(body)) throw malformedPolicy('This policy contains invalid Json');
  await checkedPolicy(ctx.store, ctx.bucket.name, text);
  await ctx.store.setBucketPolicy(ctx.bucket.id, text);
  sendEmpty(ctx.res, 204);
}

/** A policy document for `bucket`, checked as PutBucketPolicy checks it (the admin API's too). */
export async function checkedPolicy(
  store: MetadataStore,
  bucket: string,
  text: string,
): Promise<BucketPolicy> {
  const policy = parsePolicy(text, bucket);
  // As S3 refuses a principal that does not exist: a policy naming a mistyped key would grant nothing and
  // look as if it did.
  for (const id of principalKeyIds(policy)) {
    if (!(await store.getKey(id))) throw malformedPolicy('Invalid principal in policy');
  }
  return policy;
}

export async function getBucketPolicy(ctx: BucketContext): Promise<void> {
  const text = ctx.bucket.policy;
  if (text === undefined) throw noBucketPolicy();
  ctx.res.statusCode = 200;
  ctx.res.setHeader('Content-Type', 'application/json');
  ctx.res.setHeader('Content-Length', Buffer.byteLength(text));
  ctx.res.end(text);
}

export async function deleteBucketPolicy(ctx: BucketContext): Promise<void> {
  if (ctx.bucket.policy !== undefined) await ctx.store.setBucketPolicy(ctx.bucket.id, undefined);
  sendEmpty(ctx.res, 204);
}

export async function getBucketPolicyStatus(ctx: BucketContext): Promise<void> {
  const policy = storedPolicy(ctx.bucket);
  if (!policy) throw noBucketPolicy();
  sendXml(ctx.res, 200, 'PolicyStatus', { IsPublic: policy !== 'unreadable' && isPublic(policy) });
}
