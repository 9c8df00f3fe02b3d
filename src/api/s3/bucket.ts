// api/s3/bucket: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation.
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { type AccountContext, type BucketContext, type S3Context } from './context.js';
import type { BucketRecord } from '../../model/types.js';
import { bucketOwners } from './bucket-settings.js';
import { bucketTakenError } from '../../model/model.js';
import { readSmallBody } from './small-body.js';
import { checkBucketName } from './router.js';
import { isoDate, sendEmpty, sendRawXml, sendXml } from './response.js';
import { S3_XMLNS, asText, escapeXml, parseXml } from './xml.js';

/** The owner shown in listings: the request's key, or for an anonymous request the bucket's owner. */
export function ownerOf(ctx: S3Context & { bucket?: BucketRecord }) {
  if (ctx.accessKey) return { ID: ctx.accessKey.id, DisplayName: ctx.accessKey.name };
  const owner: string = (ctx.bucket && bucketOwners(ctx.bucket).values().next().value) ?? 'anonymous';
  return { ID: owner, DisplayName: owner };
}

export async function listBuckets(ctx: AccountContext): Promise<void> {
  const mine = (await ctx.store.listBuckets()).filter((b) => b.permissions[ctx.accessKey.id]);
  sendXml(ctx.res, 200, 'ListAllMyBucketsResult', {
    Owner: ownerOf(ctx),
    Buckets: { Bucket: mine.map((b) => ({ Name: b.name, CreationDate: isoDate(b.createdAt) })) },
  });
}

export async function createBucket(ctx: AccountContext): Promise<void> {
  const name = ctx.bucketName!;
  const body = await readSmallBody(ctx);
  if (body.length > 0) {
    const conf = parseXml(body.toString('utf8'), 'CreateBucketConfiguration');
    const region = asText(conf.LocationConstraint);
    // aws-global: what aws CLI 2 sends with no region configured, meaning the endpoint's own region.
    if (region && region !== ctx.config.s3Api.s3Region && region !== 'aws-global') {
      throw new S3Error(
        'InvalidLocationConstraint',
        400,
        `The specified location-constraint is not valid; this server's region is ${ctx.config.s3Api.s3Region}`,
      );
    }
  }
  // Checked before the key's right to create buckets, as S3 does: the answer for an existing name is the same.
  const existing = await ctx.store.bucketByName(name);
  try {
    if (existing) throw bucketTakenError(existing, ctx.accessKey.id);
    checkBucketName(name);
    if (!ctx.accessKey.allowCreateBucket)
      throw S3Errors.accessDenied('This access key is not allowed to create buckets');
    const lockHeader = ctx.req.headers['x-amz-bucket-object-lock-enabled'];
    const objectLock = typeof lockHeader === 'string' && lockHeader.toLowerCase() === 'true';
    await ctx.store.createBucket(name, ctx.accessKey.id, objectLock);
  } catch (err) {
    // us-east-1's legacy rule: creating a bucket one already owns succeeds (and changes nothing).
    const owned = err instanceof S3Error && err.code === 'BucketAlreadyOwnedByYou';
    if (!owned || ctx.config.s3Api.s3Region !== 'us-east-1') throw err;
  }
  ctx.res.setHeader('Location', `/${name}`);
  sendEmpty(ctx.res, 200);
}

export async function headBucket(ctx: BucketContext): Promise<void> {
  ctx.res.setHeader('x-amz-bucket-region', ctx.config.s3Api.s3Region);
  sendEmpty(ctx.res, 200);
}

export async function deleteBucket(ctx: BucketContext): Promise<void> {
  await ctx.store.deleteBucket(ctx.bucketName!);
  sendEmpty(ctx.res, 204);
}

export async function getBucketLocation(ctx: BucketContext): Promise<void> {
  const region = ctx.config.s3Api.s3Region;
  // us-east-1 is reported as an empty constraint, as S3 does.
  const text = region === 'us-east-1' ? '' : escapeXml(region);
  sendRawXml(
    ctx.res,
    200,
    `<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="${S3_XMLNS}">${text}</LocationConstraint>`,
  );
}
