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
  for await (const chunk of body.stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.stream.destroy();
      throw new S3Error('MaxMessageLengthExceeded', 400, 'Your request was too big.');
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}
