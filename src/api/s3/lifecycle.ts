// api/s3/lifecycle: Put/Get/DeleteBucketLifecycleConfiguration — the rules, read from S3's XML into checked
// values and written back. What the rules do is model/lifecycle's (the worker that applies them).
import { randomBytes } from 'node:crypto';
import type { LifecycleFilter, LifecycleRule } from '../../model/types.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import type { BucketContext } from './context.js';
import { isoDate, sendEmpty, sendRawXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asList, asText, parseXml, toXml, type XmlNode } from './xml.js';

const MAX_RULES = 1000;
const MAX_RULE_ID = 255;
const DAY = 24 * 3600 * 1000;

type Node = Record<string, unknown>;

function element(value: unknown): Node | undefined {
  if (value === undefined) return undefined;
  if (value === '') return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw S3Errors.malformedXml();
  return value as Node;
}

function positiveInt(value: unknown, what: string, max = 1_000_000): number | undefined {
  const text = asText(value);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max)
    throw S3Errors.invalidArgument(`'${what}' for lifecycle rules must be a positive integer`);
  return Number(text);
}

function size(value: unknown): number | undefined {
  const text = asText(value);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw S3Errors.malformedXml();
  return Number(text);
}

function tagPair(value: unknown): [string, string] {
  const tag = element(value);
  const key = asText(tag?.Key);
  if (!tag || key === undefined || key === '') throw S3Errors.malformedXml();
  return [key, asText(tag.Value) ?? ''];
}

// A Filter holds one condition, or several under And.
function filterOf(rule: Node): LifecycleFilter {
  const legacyPrefix = asText(rule.Prefix);
  const filter = element(rule.Filter);
  if (filter === undefined) return legacyPrefix !== undefined ? { prefix: legacyPrefix } : {};
  if (legacyPrefix !== undefined) throw S3Errors.malformedXml();
  const conditions = Object.keys(filter);
  if (conditions.length > 1) throw S3Errors.malformedXml();
  const from = conditions[0] === 'And' ? element(filter.And)! : filter;
  const out: LifecycleFilter = {};
  const prefix = asText(from.Prefix);
  if (prefix !== undefined && prefix !== '') out.prefix = prefix;
  const tags = asList(from.Tag).map(tagPair);
  if (tags.length > 0) {
    out.tags = Object.fromEntries(tags);
    if (Object.keys(out.tags).length !== tags.length)
      throw S3Errors.invalidArgument('Duplicate Tag Keys are not allowed.');
  }
  const greater = size(from.ObjectSizeGreaterThan);
  const less = size(from.ObjectSizeLessThan);
  if (greater !== undefined) out.sizeGreaterThan = greater;
  if (less !== undefined) out.sizeLessThan = less;
  if (greater !== undefined && less !== undefined && less <= greater)
    throw S3Errors.invalidArgument('ObjectSizeLessThan must be greater than ObjectSizeGreaterThan');
  for (const k of Object.keys(from))
    if (!['Prefix', 'Tag', 'ObjectSizeGreaterThan', 'ObjectSizeLessThan'].includes(k))
      throw S3Errors.malformedXml();
  return out;
}

function expirationOf(value: unknown): LifecycleRule['expiration'] {
  const e = element(value);
  if (!e) return undefined;
  const days = positiveInt(e.Days, 'Days');
  const dateText = asText(e.Date);
  const marker = asText(e.ExpiredObjectDeleteMarker);
  if ([days, dateText, marker].filter((x) => x !== undefined).length !== 1) throw S3Errors.malformedXml();
  if (marker !== undefined && marker !== 'true' && marker !== 'false') throw S3Errors.malformedXml();
  let date: number | undefined;
  if (dateText !== undefined) {
    date = Date.parse(dateText);
    if (Number.isNaN(date) || date % DAY !== 0)
      throw S3Errors.invalidArgument("'Date' must be at midnight GMT", { ArgumentName: 'Date' });
  }
  return {
    ...(days !== undefined ? { days } : {}),
    ...(date !== undefined ? { date } : {}),
    ...(marker === 'true' ? { expiredObjectDeleteMarker: true } : {}),
  };
}

function ruleOf(value: unknown): LifecycleRule {
  const rule = element(value);
  if (!rule) throw S3Errors.malformedXml();
  if (rule.Transition !== undefined || rule.NoncurrentVersionTransition !== undefined)
    throw S3Errors.notImplemented('lifecycle transitions (coffre has one storage class)');
  const id = asText(rule.ID) ?? randomBytes(12).toString('base64url');
  if (id.length > MAX_RULE_ID)
    throw S3Errors.invalidArgument('ID length should not exceed allowed limit of 255');
  const status = asText(rule.Status);
  if (status !== 'Enabled' && status !== 'Disabled') throw S3Errors.malformedXml();
  const filter = filterOf(rule);
  const expiration = expirationOf(rule.Expiration);
  const noncurrent = element(rule.NoncurrentVersionExpiration);
  const noncurrentDays = noncurrent && positiveInt(noncurrent.NoncurrentDays, 'NoncurrentDays');
  if (noncurrent && noncurrentDays === undefined) throw S3Errors.malformedXml();
  const newer = noncurrent && positiveInt(noncurrent.NewerNoncurrentVersions, 'NewerNoncurrentVersions', 100);
  const abort = element(rule.AbortIncompleteMultipartUpload);
  const abortDays = abort && positiveInt(abort.DaysAfterInitiation, 'DaysAfterInitiation');
  if (abort && abortDays === undefined) throw S3Errors.malformedXml();
  if (!expiration && !noncurrent && !abort)
    throw S3Errors.invalidRequest('At least one action needs to be specified in a rule');
  if (filter.tags && (abort || expiration?.expiredObjectDeleteMarker))
    throw S3Errors.invalidRequest(
      'AbortIncompleteMultipartUpload and ExpiredObjectDeleteMarker cannot be specified with Tags.',
    );
  return {
    id,
    enabled: status === 'Enabled',
    filter,
    ...(expiration ? { expiration } : {}),
    ...(noncurrent
      ? {
          noncurrentExpiration: {
            noncurrentDays,
            ...(newer !== undefined ? { newerNoncurrentVersions: newer } : {}),
          },
        }
      : {}),
    ...(abortDays !== undefined ? { abortIncompleteUploadDays: abortDays } : {}),
  };
}

/** A LifecycleConfiguration document's rules, checked. */
export function lifecycleRulesFromXml(xml: string): LifecycleRule[] {
  const doc = parseXml(xml, 'LifecycleConfiguration');
  const rules = asList(doc.Rule).map(ruleOf);
  if (rules.length === 0 || rules.length > MAX_RULES) throw S3Errors.malformedXml();
  if (new Set(rules.map((r) => r.id)).size !== rules.length)
    throw S3Errors.invalidArgument('Rule ID must be unique. Found same ID for more than one rule');
  return rules;
}

function filterXml(f: LifecycleFilter): XmlNode {
  const parts: XmlNode = {
    Prefix: f.prefix,
    Tag: Object.entries(f.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
    ObjectSizeGreaterThan: f.sizeGreaterThan,
    ObjectSizeLessThan: f.sizeLessThan,
  };
  const count =
    (f.prefix !== undefined ? 1 : 0) +
    Object.keys(f.tags ?? {}).length +
    (f.sizeGreaterThan !== undefined ? 1 : 0) +
    (f.sizeLessThan !== undefined ? 1 : 0);
  if (count === 0) return { Prefix: '' };
  return count === 1 ? parts : { And: parts };
}

export async function putBucketLifecycle(ctx: BucketContext): Promise<void> {
  const rules = lifecycleRulesFromXml((await readSmallBody(ctx)).toString('utf8'));
  await ctx.store.setBucketLifecycle(ctx.bucket.id, rules);
  sendEmpty(ctx.res, 200);
}

export async function getBucketLifecycle(ctx: BucketContext): Promise<void> {
  const rules = ctx.bucket.lifecycle;
  if (!rules || rules.length === 0)
    throw new S3Error('NoSuchLifecycleConfiguration', 404, 'The lifecycle configuration does not exist', {
      BucketName: ctx.bucket.name,
    });
  sendRawXml(ctx.res, 200, lifecycleXml(rules));
}

/** The LifecycleConfiguration document of `rules`, as GetBucketLifecycleConfiguration answers it. */
export function lifecycleXml(rules: LifecycleRule[]): string {
  return toXml('LifecycleConfiguration', {
    Rule: rules.map((r) => ({
      ID: r.id,
      Filter: filterXml(r.filter),
      Status: r.enabled ? 'Enabled' : 'Disabled',
      Expiration: r.expiration
        ? {
            Days: r.expiration.days,
            Date: r.expiration.date !== undefined ? isoDate(r.expiration.date) : undefined,
            ExpiredObjectDeleteMarker: r.expiration.expiredObjectDeleteMarker,
          }
        : undefined,
      NoncurrentVersionExpiration: r.noncurrentExpiration
        ? {
            NoncurrentDays: r.noncurrentExpiration.noncurrentDays,
            NewerNoncurrentVersions: r.noncurrentExpiration.newerNoncurrentVersions,
          }
        : undefined,
      AbortIncompleteMultipartUpload:
        r.abortIncompleteUploadDays !== undefined
          ? { DaysAfterInitiation: r.abortIncompleteUploadDays }
          : undefined,
    })),
  });
}

export async function deleteBucketLifecycle(ctx: BucketContext): Promise<void> {
  await ctx.store.setBucketLifecycle(ctx.bucket.id, undefined);
  sendEmpty(ctx.res, 204);
}
