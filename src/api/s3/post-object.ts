// api/s3/post-object: PostObject, the browser form upload authorised by a signed policy. The server parses the
// form and checks its policy and the signer's right to write before any of the file is read; the file then
// streams into storage like a PUT.
import { tagsFromXml } from './tagging.js';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { CoffreConfig } from '../../config/config.js';
import type { ObjectStore } from '../../model/store.js';
import { RECORD_VERSION, type BucketRecord, type ObjectRecord, type Permission } from '../../model/types.js';
import {
  disposeEncryption,
  encryptionForForm,
  responseHeaders,
  sealMetadata,
  sealObjectRecord,
} from './encryption.js';
import { newVersionId } from '../../model/model.js';
import { storedHeaders, userMetadata } from './headers.js';
import type { PostObjectUpload } from './post-policy.js';
import { etagOf, storeSegment } from './put.js';
import { sendEmpty, sendXml } from './response.js';
import { checkObjectKey } from './router.js';

import type { SseS3Keys } from '../../sse/sse-s3-keys.js';

export interface PostObjectContext {
  req: IncomingMessage;
  res: ServerResponse;
  store: ObjectStore;
  config: CoffreConfig;
  requestId: string;
  secure: boolean;
  fromLoopback: boolean;
  sseS3?: SseS3Keys;
  // The bucket, which the key that signed the form's policy may write (checked by the server).
  bucket: BucketRecord;
  permission: Permission;
}

// The form has been read up to the file and its policy checked (post-policy.ts) before this runs.
export async function postObject(ctx: PostObjectContext, upload: PostObjectUpload): Promise<void> {
  const bucket = ctx.bucket;
  checkObjectKey(upload.key);
  const fields = upload.fields;
  const headers = storedHeaders(fields);
  const userMeta = userMetadata(fields);
  const tags = fields.tagging === undefined ? undefined : tagsFromXml(fields.tagging);
  const enc = encryptionForForm(fields, ctx, bucket);
  try {
    const versionId = newVersionId();
    const md5 = createHash('md5');
    const hashing = new Transform({
      transform(chunk: Buffer, _e, cb) {
        md5.update(chunk);
        cb(null, chunk);
      },
    });
    upload.fileStream.on('error', (err) => hashing.destroy(err));
    const identity = { bucketId: bucket.id, key: upload.key, versionId };
    const segment = await storeSegment(ctx.store, upload.fileStream.pipe(hashing), enc, identity, 0);
    const record: ObjectRecord = sealObjectRecord(
      enc,
      {
        v: RECORD_VERSION,
        bucketId: bucket.id,
        key: upload.key,
        versionId,
        size: segment.plainSize,
        etag: etagOf(enc, md5.digest()),
        lastModified: Date.now(),
        ...sealMetadata(enc, { ...identity, headers, userMeta, checksums: {} }),
        segments: [segment],
        ...(tags ? { tags } : {}),
      },
      {},
    );
    const stored = await ctx.store.putObject(record);
    if (stored !== undefined) ctx.res.setHeader('x-amz-version-id', stored);
    for (const [k, v] of Object.entries(responseHeaders(enc))) ctx.res.setHeader(k, v);
    ctx.res.setHeader('ETag', record.etag);
    const location = `/${bucket.name}/${encodeURIComponent(upload.key)}`;
    ctx.res.setHeader('Location', location);
    const redirect = fields.success_action_redirect ?? fields.redirect;
    if (redirect) {
      try {
        const target = new URL(redirect);
        target.searchParams.set('bucket', bucket.name);
        target.searchParams.set('key', upload.key);
        target.searchParams.set('etag', record.etag);
        ctx.res.setHeader('Location', target.toString());
        sendEmpty(ctx.res, 303);
        return;
      } catch {
        // Not a URL: S3 ignores it and answers as without a redirect.
      }
    }
    const status = fields.success_action_status;
    if (status === '201') {
      sendXml(
        ctx.res,
        201,
        'PostResponse',
        { Location: location, Bucket: bucket.name, Key: upload.key, ETag: record.etag },
        false,
      );
    } else {
      sendEmpty(ctx.res, status === '200' ? 200 : 204);
    }
  } finally {
    disposeEncryption(enc);
  }
}
