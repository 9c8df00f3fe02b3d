// api/s3/post-object: PostObject, the browser form upload authorised by a signed policy. The server parses the
// form and checks its policy and the signer's right to write before any of the file is read; the file then
// streams into storage like a PUT.
import { tagsFromXml } from './tagging.js';
import { S3Error } from '../../util/s3-error.js';
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
import { etagOf, storeSegment, streamObject } from './put.js';
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

/** The largest file a form may upload through a gateway (held in memory: see formFile). */
const FORM_FILE_IN_MEMORY = 64 * 1024 * 1024;

// The whole file of a form, refused once larger than FORM_FILE_IN_MEMORY (the policy's own limits are checked
// by the stream as it is read, post-policy.ts).
async function formFile(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of stream) {
    size += piece.length;
    if (size > FORM_FILE_IN_MEMORY)
      throw new S3Error(
        'EntityTooLarge',
        400,
        `Your proposed upload exceeds the maximum allowed size: a form uploads at most ${FORM_FILE_IN_MEMORY} bytes through a gateway`,
        { MaxSizeAllowed: String(FORM_FILE_IN_MEMORY) },
      );
    pieces.push(piece);
  }
  return Buffer.concat(pieces, size);
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
    let record: ObjectRecord;
    let stored: string | undefined;
    if (ctx.store.streams) {
      // A backend's PUT needs the length before the first byte, and a form does not say the file's: the file
      // is held in memory, up to FORM_FILE_IN_MEMORY, then sealed and stored as one PUT (docs/gateway.md).
      const file = await formFile(upload.fileStream);
      record = await streamObject(
        ctx.store.streams,
        enc,
        { bucketId: bucket.id, key: upload.key, headers, userMeta, tags },
        (async function* () {
          yield file;
        })(),
        file.length,
      );
    } else {
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
      record = sealObjectRecord(
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
      stored = await ctx.store.putObject(record);
    }
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
