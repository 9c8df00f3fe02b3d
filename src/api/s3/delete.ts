// api/s3/delete: DeleteObject and DeleteObjects (batch, with Quiet).
import { S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml, type XmlNode } from './xml.js';
import { createHash } from 'node:crypto';
import { MAX_KEY_BYTES } from './router.js';

const MAX_DELETE_KEYS = 1000;

export async function deleteObject(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await ctx.store.deleteObject(bucket.id, requireKey(ctx));
  sendEmpty(ctx.res, 204);
}

export async function deleteObjects(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const body = await readSmallBody(ctx);
  const md5 = header(ctx, 'content-md5');
  if (md5 !== undefined && createHash('md5').update(body).digest('base64') !== md5)
    throw S3Errors.badDigest();
  const doc = parseXml(body.toString('utf8'), 'Delete');
  const quiet = asText(doc.Quiet) === 'true';
  const objects = asList(doc.Object);
  if (objects.length === 0 || objects.length > MAX_DELETE_KEYS) throw S3Errors.malformedXml();
  const keys = objects.map((o) => {
    if (typeof o !== 'object' || o === null) throw S3Errors.malformedXml();
    const key = asText((o as Record<string, unknown>).Key);
    if (key === undefined || key === '') throw S3Errors.malformedXml();
    return key;
  });
  // Each key is allowed or refused on its own (the bucket policy may deny some, or grant some to a key
  // without write); a batch granted no key at all is refused whole.
  const allowed: string[] = [];
  const refused: string[] = [];
  for (const key of keys) {
    if (await ctx.may({ action: 's3:DeleteObject', key }, 'write')) allowed.push(key);
    else refused.push(key);
  }
  if (allowed.length === 0) throw S3Errors.accessDenied();
  // One transaction for the whole batch: each key is deleted or none is, and the commit is one fsync. A key
  // longer than any key can be does not exist, so it is reported deleted without asking the store.
  await ctx.store.deleteObjects(
    bucket.id,
    allowed.filter((k) => Buffer.byteLength(k) <= MAX_KEY_BYTES),
  );
  const deleted: XmlNode[] = quiet ? [] : allowed.map((key) => ({ Key: key }));
  const errors: XmlNode[] = refused.map((key) => ({
    Key: key,
    Code: 'AccessDenied',
    Message: 'Access Denied',
  }));
  sendXml(ctx.res, 200, 'DeleteResult', { Deleted: deleted, Error: errors });
}
