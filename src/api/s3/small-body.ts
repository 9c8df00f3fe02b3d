// api/s3/small-body: request bodies that are configuration documents (XML), read whole under a size limit.
import { S3Error } from '../../util/s3-error.js';
import type { S3Context } from './context.js';
import { MAX_XML_BODY } from './xml.js';

export async function readSmallBody(ctx: S3Context, limit = MAX_XML_BODY): Promise<Buffer> {
  const declared = Number(ctx.req.headers['content-length'] ?? '0');
  if (declared > limit) throw new S3Error('MaxMessageLengthExceeded', 400, 'Your request was too big.');
  const parts: Buffer[] = [];
  let size = 0;
  const body = ctx.body();
  // Not destroyed on the way out: that would tear down the request (and its socket) through the body's
  // pipeline before the error is written; the server discards the rest of the body after answering.
  for await (const chunk of body.stream.iterator({ destroyOnReturn: false })) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new S3Error('MaxMessageLengthExceeded', 400, 'Your request was too big.');
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}
