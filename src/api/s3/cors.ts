// api/s3/cors: Put/Get/DeleteBucketCors, preflight OPTIONS, and CORS headers on ordinary responses.
import type { BucketRecord, CorsRule } from '../../model/types.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import type { BucketContext } from './context.js';
import { sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml } from './xml.js';
import type { ObjectStore } from '../../model/store.js';
import type { IncomingMessage, ServerResponse } from 'node:http';

const CORS_METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'HEAD'];
const MAX_CORS_RULES = 100;

function texts(v: unknown): string[] {
  return asList(v).map((x) => {
    const t = asText(x);
    if (t === undefined) throw S3Errors.malformedXml();
    return t;
  });
}

export async function putBucketCors(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'CORSConfiguration');
  const rules = asList(doc.CORSRule).map((r) => {
    if (typeof r !== 'object' || r === null) throw S3Errors.malformedXml();
    const rule = r as Record<string, unknown>;
    const maxAge = asText(rule.MaxAgeSeconds);
    if (maxAge !== undefined && !/^\d+$/.test(maxAge)) throw S3Errors.malformedXml();
    return {
      id: asText(rule.ID),
      allowedOrigins: texts(rule.AllowedOrigin),
      allowedMethods: texts(rule.AllowedMethod),
      allowedHeaders: texts(rule.AllowedHeader),
      exposeHeaders: texts(rule.ExposeHeader),
      maxAgeSeconds: maxAge === undefined ? undefined : Number(maxAge),
    };
  });
  await ctx.store.setBucketCors(bucket.id, checkedCorsRules(rules));
  sendEmpty(ctx.res, 200);
}

/** A bucket's CORS rules as S3 accepts them: 1 to 100 rules, each with origins and known methods. */
export function checkedCorsRules(rules: CorsRule[]): CorsRule[] {
  if (rules.length === 0 || rules.length > MAX_CORS_RULES) throw S3Errors.malformedXml();
  for (const rule of rules) {
    if (rule.allowedMethods.length === 0 || rule.allowedOrigins.length === 0) throw S3Errors.malformedXml();
    for (const m of rule.allowedMethods) {
      if (!CORS_METHODS.includes(m))
        throw S3Errors.invalidRequest(
          `Found unsupported HTTP method in CORS config. Unsupported method is ${m}`,
        );
    }
  }
  return rules;
}

export async function getBucketCors(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  if (!bucket.cors?.length) {
    throw new S3Error('NoSuchCORSConfiguration', 404, 'The CORS configuration does not exist', {
      BucketName: bucket.name,
    });
  }
  sendXml(ctx.res, 200, 'CORSConfiguration', {
    CORSRule: bucket.cors.map((r) => ({
      ID: r.id,
      AllowedHeader: r.allowedHeaders,
      AllowedMethod: r.allowedMethods,
      AllowedOrigin: r.allowedOrigins,
      ExposeHeader: r.exposeHeaders,
      MaxAgeSeconds: r.maxAgeSeconds,
    })),
  });
}

export async function deleteBucketCors(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await ctx.store.setBucketCors(bucket.id, undefined);
  sendEmpty(ctx.res, 204);
}

function wildcardMatch(pattern: string, value: string): boolean {
  const star = pattern.indexOf('*');
  if (star < 0) return pattern === value;
  const head = pattern.slice(0, star);
  const tail = pattern.slice(star + 1);
  return value.length >= head.length + tail.length && value.startsWith(head) && value.endsWith(tail);
}

function findRule(
  bucket: BucketRecord,
  origin: string,
  method: string,
  requestHeaders: string[],
): CorsRule | undefined {
  return bucket.cors?.find(
    (r) =>
      r.allowedOrigins.some((o) => wildcardMatch(o, origin)) &&
      r.allowedMethods.includes(method) &&
      requestHeaders.every((h) =>
        r.allowedHeaders.some((a) => wildcardMatch(a.toLowerCase(), h.toLowerCase())),
      ),
  );
}

function applyRule(res: ServerResponse, rule: CorsRule, origin: string): void {
  res.setHeader('Access-Control-Allow-Origin', rule.allowedOrigins.includes('*') ? '*' : origin);
  if (!rule.allowedOrigins.includes('*')) res.setHeader('Vary', 'Origin');
  if (rule.exposeHeaders.length)
    res.setHeader('Access-Control-Expose-Headers', rule.exposeHeaders.join(', '));
}

// Preflight: unauthenticated, answered from the bucket's CORS rules.
export async function preflight(
  store: ObjectStore,
  bucketName: string | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const origin = req.headers.origin;
  const method = req.headers['access-control-request-method'];
  if (!origin || typeof method !== 'string') {
    throw S3Errors.invalidRequest('Insufficient information. Origin request header needed.');
  }
  const bucket = bucketName ? await store.bucketByName(bucketName) : undefined;
  const requested = String(req.headers['access-control-request-headers'] ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  const rule = bucket ? findRule(bucket, origin, method, requested) : undefined;
  if (!rule)
    throw new S3Error(
      'AccessForbidden',
      403,
      "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
    );
  applyRule(res, rule, origin);
  res.setHeader('Access-Control-Allow-Methods', rule.allowedMethods.join(', '));
  if (requested.length) res.setHeader('Access-Control-Allow-Headers', requested.join(', '));
  if (rule.maxAgeSeconds !== undefined) res.setHeader('Access-Control-Max-Age', rule.maxAgeSeconds);
  sendEmpty(res, 200);
}

// CORS headers on an ordinary request from a browser, once the request is allowed on the bucket.
export function addCorsHeaders(req: IncomingMessage, res: ServerResponse, bucket: BucketRecord): void {
  const origin = req.headers.origin;
  if (!origin || !bucket.cors) return;
  const rule = findRule(bucket, origin, req.method ?? 'GET', []);
  if (rule) applyRule(res, rule, origin);
}
