// api/s3/delete: DeleteObject and DeleteObjects (batch, with Quiet), of versions and with delete markers.
import type { DeleteEntry, DeleteEntryOutcome } from '../../model/model.js';
import { S3Errors, type S3Error } from '../../util/s3-error.js';
import { versionedAction } from './authorize.js';
import { bypassGovernance } from './object-lock.js';
import { checkedVersionId, versionIdParam } from './versioning.js';
import { header, requireKey, type BucketContext } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml, type XmlNode } from './xml.js';
import { createHash } from 'node:crypto';
import { MAX_KEY_BYTES } from './router.js';

const MAX_DELETE_KEYS = 1000;

export async function deleteObject(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const key = requireKey(ctx);
  const outcome = await ctx.store.deleteObject(
    bucket.id,
    key,
    versionIdParam(ctx),
    await bypassGovernance(ctx, [key]),
  );
  if (outcome.versionId !== undefined) ctx.res.setHeader('x-amz-version-id', outcome.versionId);
  if (outcome.deleteMarker) ctx.res.setHeader('x-amz-delete-marker', 'true');
  sendEmpty(ctx.res, 204);
}

// An entry of a DeleteObjects answer: what was deleted (a version, or a delete marker made), or why not.
function resultEntry(entry: DeleteEntryOutcome): { deleted?: XmlNode; error?: XmlNode } {
  if (entry.error)
    return {
      error: {
        Key: entry.key,
        VersionId: entry.versionId,
        Code: entry.error.code,
        Message: entry.error.message,
      },
    };
  const marker = entry.deleteMarker ? { DeleteMarker: true, DeleteMarkerVersionId: entry.versionId } : {};
  return {
    deleted: {
      Key: entry.key,
      VersionId: entry.versionId === undefined ? undefined : entry.versionId,
      ...marker,
    },
  };
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
  const entries: DeleteEntry[] = objects.map((o) => {
    if (typeof o !== 'object' || o === null) throw S3Errors.malformedXml();
    const key = asText((o as Record<string, unknown>).Key);
    if (key === undefined || key === '') throw S3Errors.malformedXml();
    const versionId = asText((o as Record<string, unknown>).VersionId);
    return versionId === undefined ? { key } : { key, versionId };
  });
  // A key longer than any key can be does not exist, and a version id that coffre cannot have made names no
  // version: such entries are answered here without asking the store.
  const answered = new Map<DeleteEntry, DeleteEntryOutcome>();
  for (const entry of entries) {
    if (entry.versionId !== undefined) {
      try {
        checkedVersionId(entry.versionId);
      } catch (err) {
        const e = err as S3Error;
        answered.set(entry, { ...entry, error: { code: 'NoSuchVersion', message: e.message } });
        continue;
      }
    }
    if (Buffer.byteLength(entry.key) > MAX_KEY_BYTES) answered.set(entry, entry);
  }
  // Each entry is allowed or refused on its own (the bucket policy may deny some, or grant some to a key
  // without write); a batch granted no entry at all is refused whole.
  let granted = 0;
  for (const entry of entries) {
    const action = versionedAction('s3:DeleteObject', entry.versionId);
    if (await ctx.may({ action, key: entry.key }, 'write')) granted++;
    else answered.set(entry, { ...entry, error: { code: 'AccessDenied', message: 'Access Denied' } });
  }
  if (granted === 0) throw S3Errors.accessDenied();
  // One transaction for the whole batch, and the commit is one fsync; an entry object lock refuses is
  // reported as an error, the others go. The bypass holds for the batch only if it holds for every key in it,
  // so that one key's grant never unlocks another's versions.
  const asked = entries.filter((e) => !answered.has(e));
  const bypass = await bypassGovernance(
    ctx,
    asked.map((e) => e.key),
  );
  const outcomes = await ctx.store.deleteObjects(bucket.id, asked, bypass);
  asked.forEach((entry, i) => answered.set(entry, outcomes[i] ?? entry));
  const results = entries.map((e) => resultEntry(answered.get(e)!));
  sendXml(ctx.res, 200, 'DeleteResult', {
    Deleted: quiet ? [] : results.flatMap((r) => (r.deleted ? [r.deleted] : [])),
    Error: results.flatMap((r) => (r.error ? [r.error] : [])),
  });
}
