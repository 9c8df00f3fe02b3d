// api/s3/bucket-encryption: Put/Get/DeleteBucketEncryption — a bucket whose new objects are stored with SSE-S3
// unless the request asks for SSE-C (as S3's default encryption). Only SSE-S3 (AES256) is offered: coffre has
// no KMS.
import { S3Error, S3Errors } from '../../util/s3-error.js';
import type { BucketContext } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml } from './xml.js';

export async function putBucketEncryption(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'ServerSideEncryptionConfiguration');
  const rules = asList(doc.Rule);
  if (rules.length !== 1 || typeof rules[0] !== 'object' || rules[0] === null) throw S3Errors.malformedXml();
  const byDefault = (rules[0] as Record<string, unknown>).ApplyServerSideEncryptionByDefault;
  if (typeof byDefault !== 'object' || byDefault === null) throw S3Errors.malformedXml();
  const algorithm = asText((byDefault as Record<string, unknown>).SSEAlgorithm);
  if (algorithm === 'aws:kms' || algorithm === 'aws:kms:dsse') throw S3Errors.notImplemented('SSE-KMS');
  if (algorithm !== 'AES256') {
    throw S3Errors.invalidArgument('The encryption method specified is not supported', {
      ArgumentName: 'SSEAlgorithm',
    });
  }
  // A default this node could not apply would turn every plain upload into an error: say so now.
  if (!ctx.sseS3?.configured) {
    throw S3Errors.invalidRequest(
      'SSE-S3 is not set up on this node: an operator creates its keyring with `coffre sse-s3 init` first',
    );
  }
  await ctx.store.setBucketEncryption(bucket.id, 'AES256');
  sendEmpty(ctx.res, 200);
}

export async function getBucketEncryption(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  if (bucket.defaultEncryption !== 'AES256') {
    throw new S3Error(
      'ServerSideEncryptionConfigurationNotFoundError',
      404,
      'The server side encryption configuration was not found',
      { BucketName: bucket.name },
    );
  }
  sendXml(ctx.res, 200, 'ServerSideEncryptionConfiguration', {
    Rule: { ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' }, BucketKeyEnabled: false },
  });
}

export async function deleteBucketEncryption(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await ctx.store.setBucketEncryption(bucket.id, undefined);
  sendEmpty(ctx.res, 204);
}
