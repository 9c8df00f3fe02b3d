// api/s3/object-lock: Put/GetObjectLockConfiguration (a bucket's default retention), Put/GetObjectRetention,
// Put/GetObjectLegalHold, the x-amz-object-lock-* headers of writes, and who may bypass a GOVERNANCE
// retention. Whether a version may be removed is decided by the model, with the real time, inside the
// transaction that would remove it: COMPLIANCE mode cannot be bypassed by anyone.
import type { BucketRecord, DefaultRetention, LockMode, ObjectRecord, Retention } from '../../model/types.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { header, requireKey, type BucketContext, type S3Context } from './context.js';
import { isoDate, sendEmpty, sendXml } from './response.js';
import { readSmallBody } from './small-body.js';
import { asText, parseXml } from './xml.js';
import { versionIdParam } from './versioning.js';

const MODES: readonly LockMode[] = ['GOVERNANCE', 'COMPLIANCE'];

function lockMode(value: string | undefined): LockMode {
  if (!MODES.includes(value as LockMode)) throw S3Errors.malformedXml();
  return value as LockMode;
}

function missingLockConfiguration(): S3Error {
  return S3Errors.invalidRequest('Bucket is missing Object Lock Configuration');
}

function retainUntil(value: string, argumentName: string): number {
  const until = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\dT/.test(value) || Number.isNaN(until))
    throw S3Errors.invalidArgument('The retain until date is not valid', { ArgumentName: argumentName });
  if (until <= Date.now()) throw S3Errors.invalidArgument('The retain until date must be in the future!');
  return until;
}

/**
 * x-amz-bypass-governance-retention: honoured only where the request may do s3:BypassGovernanceRetention on
 * every object named (`keys`): a key holding the owner permission on the bucket, or one the bucket policy
 * grants it to; a policy Deny takes it from an owner too. For others the header is ignored, so a protected
 * version stays refused.
 */
export async function bypassGovernance(ctx: BucketContext, keys: readonly string[]): Promise<boolean> {
  if (header(ctx, 'x-amz-bypass-governance-retention')?.toLowerCase() !== 'true') return false;
  for (const key of new Set(keys))
    if (!(await ctx.may({ action: 's3:BypassGovernanceRetention', key }, 'owner'))) return false;
  return true;
}

/** The object lock a write asks for with its headers (PutObject, CopyObject, CreateMultipartUpload). */
export function lockFromHeaders(
  ctx: S3Context,
  bucket: BucketRecord,
): { retention?: Retention; legalHold?: boolean } {
  const mode = header(ctx, 'x-amz-object-lock-mode');
  const until = header(ctx, 'x-amz-object-lock-retain-until-date');
  const hold = header(ctx, 'x-amz-object-lock-legal-hold');
  if (mode === undefined && until === undefined && hold === undefined) return {};
  if (!bucket.objectLock) throw missingLockConfiguration();
  if ((mode === undefined) !== (until === undefined))
    throw S3Errors.invalidArgument(
      'x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied',
    );
  if (hold !== undefined && hold !== 'ON' && hold !== 'OFF')
    throw S3Errors.invalidArgument('Legal Hold must be either of ON or OFF', {
      ArgumentName: 'x-amz-object-lock-legal-hold',
    });
  const out: { retention?: Retention; legalHold?: boolean } = {};
  if (mode !== undefined && until !== undefined) {
    if (!MODES.includes(mode as LockMode))
      throw S3Errors.invalidArgument('Unknown wormMode directive.', {
        ArgumentName: 'x-amz-object-lock-mode',
      });
    out.retention = {
      mode: mode as LockMode,
      until: retainUntil(until, 'x-amz-object-lock-retain-until-date'),
    };
  }
  if (hold === 'ON') out.legalHold = true;
  return out;
}

/** The lock headers of GET and HEAD. */
export function lockHeaders(record: ObjectRecord): Record<string, string> {
  const out: Record<string, string> = {};
  if (record.retention) {
    out['x-amz-object-lock-mode'] = record.retention.mode;
    out['x-amz-object-lock-retain-until-date'] = isoDate(record.retention.until);
  }
  if (record.legalHold) out['x-amz-object-lock-legal-hold'] = 'ON';
  return out;
}

export async function putObjectLockConfiguration(ctx: BucketContext): Promise<void> {
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'ObjectLockConfiguration');
  if (asText(doc.ObjectLockEnabled) !== 'Enabled') throw S3Errors.malformedXml();
  let rule: DefaultRetention | undefined;
  if (doc.Rule !== undefined) {
    const retention = (doc.Rule as Record<string, unknown> | null)?.DefaultRetention as
      Record<string, unknown> | undefined;
    if (typeof retention !== 'object' || retention === null) throw S3Errors.malformedXml();
    const mode = lockMode(asText(retention.Mode));
    const days = asText(retention.Days);
    const years = asText(retention.Years);
    if ((days === undefined) === (years === undefined)) throw S3Errors.malformedXml();
    const count = Number(days ?? years);
    const max = days !== undefined ? 36500 : 100;
    if (!/^\d+$/.test(days ?? years ?? '') || count < 1 || count > max)
      throw S3Errors.invalidArgument('Default retention period must be a positive integer value');
    rule = days !== undefined ? { mode, days: count } : { mode, years: count };
  }
  await ctx.store.setBucketObjectLock(ctx.bucket.id, rule);
  sendEmpty(ctx.res, 200);
}

export async function getObjectLockConfiguration(ctx: BucketContext): Promise<void> {
  const lock = ctx.bucket.objectLock;
  if (!lock)
    throw new S3Error(
      'ObjectLockConfigurationNotFoundError',
      404,
      'Object Lock configuration does not exist for this bucket',
      { BucketName: ctx.bucket.name },
    );
  const rule = lock.rule;
  sendXml(ctx.res, 200, 'ObjectLockConfiguration', {
    ObjectLockEnabled: 'Enabled',
    Rule: rule ? { DefaultRetention: { Mode: rule.mode, Days: rule.days, Years: rule.years } } : undefined,
  });
}

/** The version a retention or legal hold call names (the current one without versionId). */
async function lockedVersion(ctx: BucketContext): Promise<ObjectRecord> {
  const key = requireKey(ctx);
  if (!ctx.bucket.objectLock) throw missingLockConfiguration();
  const versionId = versionIdParam(ctx);
  const record = await ctx.store.getVersion(ctx.bucket.id, key, versionId);
  if (!record || (record.deleteMarker && versionId === undefined))
    throw versionId === undefined ? S3Errors.noSuchKey(key) : S3Errors.noSuchVersion(key, versionId);
  if (record.deleteMarker)
    throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
  return record;
}

function noLockOnObject(): S3Error {
  return new S3Error(
    'NoSuchObjectLockConfiguration',
    404,
    'The specified object does not have a ObjectLock configuration',
  );
}

export async function getObjectRetention(ctx: BucketContext): Promise<void> {
  const record = await lockedVersion(ctx);
  if (!record.retention) throw noLockOnObject();
  sendXml(ctx.res, 200, 'Retention', {
    Mode: record.retention.mode,
    RetainUntilDate: isoDate(record.retention.until),
  });
}

export async function putObjectRetention(ctx: BucketContext): Promise<void> {
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'Retention');
  const modeText = asText(doc.Mode);
  const untilText = asText(doc.RetainUntilDate);
  if ((modeText === undefined) !== (untilText === undefined)) throw S3Errors.malformedXml();
  const retention =
    modeText === undefined
      ? null
      : { mode: lockMode(modeText), until: retainUntil(untilText!, 'RetainUntilDate') };
  const record = await lockedVersion(ctx);
  await ctx.store.setObjectLock(
    ctx.bucket.id,
    record.key,
    versionIdParam(ctx),
    { retention },
    await bypassGovernance(ctx, [record.key]),
  );
  sendEmpty(ctx.res, 200);
}

export async function getObjectLegalHold(ctx: BucketContext): Promise<void> {
  const record = await lockedVersion(ctx);
  sendXml(ctx.res, 200, 'LegalHold', { Status: record.legalHold ? 'ON' : 'OFF' });
}

export async function putObjectLegalHold(ctx: BucketContext): Promise<void> {
  const doc = parseXml((await readSmallBody(ctx)).toString('utf8'), 'LegalHold');
  const status = asText(doc.Status);
  if (status !== 'ON' && status !== 'OFF') throw S3Errors.malformedXml();
  const record = await lockedVersion(ctx);
  await ctx.store.setObjectLock(ctx.bucket.id, record.key, versionIdParam(ctx), {
    legalHold: status === 'ON',
  });
  sendEmpty(ctx.res, 200);
}
