// api/s3/tagging: object and bucket tags — Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging, and the
// `x-amz-tagging` header (or PostObject's `tagging` field) that sets an object's tags as it is written. Tags are
// kept in the clear beside the record, as in S3: the tagging calls carry no SSE-C key, so they could not be
// sealed with the object's; do not put secrets in tags.
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml } from './xml.js';
import { setVersionHeader, versionIdParam } from './versioning.js';

export type Tags = Record<string, string>;

const MAX_OBJECT_TAGS = 10;
const MAX_BUCKET_TAGS = 50;

function invalidTag(message: string): S3Error {
  return new S3Error('InvalidTag', 400, message);
}

// S3's rules: keys of 1 to 128 characters, values of up to 256, no key twice, none in the reserved aws: space.
function checkedTags(pairs: [string, string][], limit: number): Tags {
  if (pairs.length > limit) throw invalidTag(`Object tags cannot be greater than ${limit}`);
  const tags: Tags = {};
  for (const [key, value] of pairs) {
    const keyLength = [...key].length;
    if (keyLength === 0 || keyLength > 128) throw invalidTag('The TagKey you have provided is invalid');
    if ([...value].length > 256) throw invalidTag('The TagValue you have provided is invalid');
    if (key.toLowerCase().startsWith('aws:')) throw invalidTag('Your TagKey cannot be prefixed with aws:');
    if (Object.hasOwn(tags, key)) throw invalidTag('Cannot provide multiple Tags with the same key');
    tags[key] = value;
  }
  return tags;
}

/** A bucket's tags, checked as PutBucketTagging checks them (the admin API's way in). */
export function checkedBucketTags(pairs: [string, string][]): Tags {
  return checkedTags(pairs, MAX_BUCKET_TAGS);
}

/** Tags given as a URL query string (`x-amz-tagging: a=1&b=2`); undefined when absent. */
export function tagsFromQueryString(value: string | undefined): Tags | undefined {
  if (value === undefined) return undefined;
  const pairs: [string, string][] = [];
  for (const part of value.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        throw invalidTag('The header x-amz-tagging is not a valid query string');
      }
    };
    pairs.push(eq < 0 ? [decode(part), ''] : [decode(part.slice(0, eq)), decode(part.slice(eq + 1))]);
  }
  return checkedTags(pairs, MAX_OBJECT_TAGS);
}

/** The tags a write request sets on its object (`x-amz-tagging`). */
export function tagsFromRequest(ctx: S3Context): Tags | undefined {
  return tagsFromQueryString(header(ctx, 'x-amz-tagging'));
}

/** A `<Tagging><TagSet><Tag><Key/><Value/></Tag>…` document's tags. */
export function tagsFromXml(xml: string, limit = MAX_OBJECT_TAGS): Tags {
  const doc = parseXml(xml, 'Tagging');
  const set = doc.TagSet;
  if (set === undefined || set === null || typeof set !== 'object') {
    if (set === '' || set === undefined) return {};
    throw S3Errors.malformedXml();
  }
  const pairs = asList((set as Record<string, unknown>).Tag).map((t): [string, string] => {
    if (typeof t !== 'object' || t === null) throw S3Errors.malformedXml();
    const key = asText((t as Record<string, unknown>).Key);
    const value = asText((t as Record<string, unknown>).Value) ?? '';
    if (key === undefined) throw S3Errors.malformedXml();
    return [key, value];
  });
  return checkedTags(pairs, limit);
}

function sendTagSet(ctx: S3Context, tags: Tags | undefined): void {
  sendXml(ctx.res, 200, 'Tagging', {
    TagSet: { Tag: Object.entries(tags ?? {}).map(([Key, Value]) => ({ Key, Value })) },
  });
}

export async function getObjectTagging(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  const versionId = versionIdParam(ctx);
  const record = await ctx.store.getVersion(bucket.id, key, versionId);
  if (!record || (record.deleteMarker && versionId === undefined))
    throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
  if (record.deleteMarker)
    throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
  setVersionHeader(ctx, bucket, record);
  sendTagSet(ctx, ctx.store.streams ? await ctx.store.streams.objectTags(record) : record.tags);
}

async function setTags(ctx: BucketContext, tags: Tags | undefined): Promise<void> {
  const bucket = ctx.bucket;
  const versionId = await ctx.store.setObjectTags(bucket.id, requireKey(ctx), tags, versionIdParam(ctx));
  if (bucket.versioning) ctx.res.setHeader('x-amz-version-id', versionId);
}

export async function putObjectTagging(ctx: BucketContext): Promise<void> {
  await setTags(ctx, tagsFromXml((await readSmallBody(ctx)).toString('utf8')));
  sendEmpty(ctx.res, 200);
}

export async function deleteObjectTagging(ctx: BucketContext): Promise<void> {
  await setTags(ctx, undefined);
  sendEmpty(ctx.res, 204);
}

export async function getBucketTagging(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  if (!bucket.tags || Object.keys(bucket.tags).length === 0)
    throw new S3Error('NoSuchTagSet', 404, 'The TagSet does not exist', { BucketName: bucket.name });
  sendTagSet(ctx, bucket.tags);
}

export async function putBucketTagging(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const tags = tagsFromXml((await readSmallBody(ctx)).toString('utf8'), MAX_BUCKET_TAGS);
  await ctx.store.setBucketTags(bucket.id, tags);
  sendEmpty(ctx.res, 204);
}

export async function deleteBucketTagging(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await ctx.store.setBucketTags(bucket.id, undefined);
  sendEmpty(ctx.res, 204);
}
