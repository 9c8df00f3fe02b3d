// api/s3/bucket-settings: the bucket and object settings coffre has no store for, answered as S3 answers a bucket
// where they are unset, so that tools which read them (s3cmd info, the aws CLI, Terraform, backup tools probing a
// bucket) get the truth instead of a NotImplemented they cannot interpret.
//
// Access is coffre's per-key bucket permissions (`coffre bucket allow|deny`), so a bucket behaves as an S3
// bucket with Object Ownership "BucketOwnerEnforced", the S3 default since 2023: ACLs are disabled. Reading an
// ACL shows the owner with FULL_CONTROL; setting one, or writing with one, is refused with
// AccessControlListNotSupported unless it grants nothing beyond the owner's rights. Setting websites and the
// like stays NotImplemented (router.ts); deleting one that cannot exist succeeds. (Bucket policies are real:
// bucket-policy.ts; versioning, object lock and lifecycle too: versioning.ts, object-lock.ts, lifecycle.ts.)
import type { IncomingHttpHeaders } from 'node:http';
import type { BucketRecord } from '../../model/types.js';
import { S3Error } from '../../util/s3-error.js';
import { requireKey, type BucketContext, type S3Context } from './context.js';
import { requireObject } from './get.js';
import { sendEmpty, sendRawXml } from './response.js';
import { S3_XMLNS, asList, asText, escapeXml, parseXml } from './xml.js';
import { readSmallBody } from './small-body.js';

/** Bucket sub-resources whose GET answers "not configured", and how S3 words it. */
const UNSET_ERRORS: Record<string, () => S3Error> = {
  website: () =>
    new S3Error(
      'NoSuchWebsiteConfiguration',
      404,
      'The specified bucket does not have a website configuration',
    ),
  replication: () =>
    new S3Error('ReplicationConfigurationNotFoundError', 404, 'The replication configuration was not found'),
  publicAccessBlock: () =>
    new S3Error(
      'NoSuchPublicAccessBlockConfiguration',
      404,
      'The public access block configuration was not found',
    ),
};

/** Bucket sub-resources whose GET answers an empty (or fixed) document: root element and content. */
const EMPTY_DOCUMENTS: Record<string, [string, string]> = {
  logging: ['BucketLoggingStatus', ''],
  notification: ['NotificationConfiguration', ''],
  accelerate: ['AccelerateConfiguration', ''],
  requestPayment: ['RequestPaymentConfiguration', '<Payer>BucketOwner</Payer>'],
  ownershipControls: [
    'OwnershipControls',
    '<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>',
  ],
};

/** Unset settings a DELETE may "remove" (204: the state asked for already holds). */
const DELETABLE = ['website', 'replication', 'publicAccessBlock'];

/** What a bucket policy calls reading each of them, and removing the deletable ones. */
const READ_ACTIONS: Record<string, string> = {
  website: 's3:GetBucketWebsite',
  replication: 's3:GetReplicationConfiguration',
  publicAccessBlock: 's3:GetBucketPublicAccessBlock',
  logging: 's3:GetBucketLogging',
  notification: 's3:GetBucketNotification',
  accelerate: 's3:GetAccelerateConfiguration',
  requestPayment: 's3:GetBucketRequestPayment',
  ownershipControls: 's3:GetBucketOwnershipControls',
};
const DELETE_ACTIONS: Record<string, string> = {
  website: 's3:DeleteBucketWebsite',
  replication: 's3:PutReplicationConfiguration',
  publicAccessBlock: 's3:PutBucketPublicAccessBlock',
};

/** The bucket sub-resource a GET of unset settings names, if it is one coffre answers. */
export function unsetSettingRead(query: URLSearchParams): string | undefined {
  return [...Object.keys(UNSET_ERRORS), ...Object.keys(EMPTY_DOCUMENTS)].find((name) => query.has(name));
}

/** The bucket sub-resource a DELETE of unset settings names, if it is one coffre answers. */
export function unsetSettingDelete(query: URLSearchParams): string | undefined {
  return DELETABLE.find((name) => query.has(name));
}

/** The S3 action of a GET of an unset setting (router.ts AUTHORIZATION). */
export function unsetSettingReadAction(query: URLSearchParams): string {
  return READ_ACTIONS[unsetSettingRead(query) ?? ''] ?? 's3:GetBucketAcl';
}

/** The S3 action of a DELETE of an unset setting. */
export function unsetSettingDeleteAction(query: URLSearchParams): string {
  return DELETE_ACTIONS[unsetSettingDelete(query) ?? ''] ?? 's3:PutBucketAcl';
}

export async function getBucketSetting(ctx: BucketContext): Promise<void> {
  const name = unsetSettingRead(ctx.query)!;
  const unset = UNSET_ERRORS[name];
  if (unset) throw unset();
  const [root, content] = EMPTY_DOCUMENTS[name]!;
  sendRawXml(
    ctx.res,
    200,
    `<?xml version="1.0" encoding="UTF-8"?><${root} xmlns="${S3_XMLNS}">${content}</${root}>`,
  );
}

export async function deleteBucketSetting(ctx: BucketContext): Promise<void> {
  sendEmpty(ctx.res, 204);
}

type Permissions = Record<string, { owner: boolean }>;

/** The access keys holding the owner permission on a bucket. */
function ownerIds(permissions: Permissions): Set<string> {
  return new Set(Object.keys(permissions).filter((k) => permissions[k]!.owner));
}

/** The bucket's owner as S3 names one: the (first) access key holding the owner permission. */
async function bucketOwner(ctx: S3Context, permissions: Permissions) {
  const id: string = ownerIds(permissions).values().next().value ?? ctx.accessKey?.id ?? 'anonymous';
  const name = id === ctx.accessKey?.id ? ctx.accessKey.name : (await ctx.store.getKey(id))?.name;
  return { id, name: name ?? id };
}

async function sendOwnerOnlyAcl(ctx: S3Context, permissions: Permissions) {
  const owner = await bucketOwner(ctx, permissions);
  const person = `<ID>${escapeXml(owner.id)}</ID><DisplayName>${escapeXml(owner.name)}</DisplayName>`;
  sendRawXml(
    ctx.res,
    200,
    `<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy xmlns="${S3_XMLNS}">` +
      `<Owner>${person}</Owner><AccessControlList><Grant>` +
      `<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">${person}</Grantee>` +
      `<Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>`,
  );
}

export async function getBucketAcl(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await sendOwnerOnlyAcl(ctx, bucket.permissions);
}

export async function getObjectAcl(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  await requireObject(ctx, bucket.id, requireKey(ctx));
  await sendOwnerOnlyAcl(ctx, bucket.permissions);
}

function aclNotSupported(): S3Error {
  return new S3Error('AccessControlListNotSupported', 400, 'The bucket does not allow ACLs');
}

/**
 * PutBucketAcl / PutObjectAcl. Only an ACL that grants nothing beyond the owner's rights is accepted (and
 * changes nothing): a canned `private`, grants to the owner, or the owner-only document that reading an ACL
 * here returns, which tools copying an object send back for the copy (s3cmd cp). Anything else is refused.
 */
export async function putAcl(ctx: BucketContext): Promise<void> {
  const bucket = ctx.bucket;
  if (ctx.key !== undefined) await requireObject(ctx, bucket.id, ctx.key);
  const ids = ownerIds(bucket.permissions);
  await refuseAclGrants(ctx.req.headers, async () => ids);
  const body = await readSmallBody(ctx);
  if (body.length > 0) {
    const policy = parseXml(body.toString('utf8'), 'AccessControlPolicy');
    const list = policy.AccessControlList as Record<string, unknown> | undefined;
    for (const grant of asList(list?.Grant)) {
      const grantee = (grant as Record<string, unknown> | null)?.Grantee as
        Record<string, unknown> | undefined;
      const id = asText(grantee?.ID);
      if (!id || !ids.has(id) || grantee?.URI !== undefined || grantee?.EmailAddress !== undefined) {
        throw aclNotSupported();
      }
    }
  }
  sendEmpty(ctx.res, 200);
}

/** Canned ACLs that grant nothing beyond the owner's own rights: accepted (and meaningless) on writes. */
const OWNER_ONLY_ACLS = new Set(['private', 'bucket-owner-full-control']);

/** Whether an x-amz-grant-* value names only these ids (`id="…"`, comma-separated), as an ACL read here does. */
function grantsOnlyTo(value: string, ids: Set<string>): boolean {
  return value.split(',').every((grantee) => {
    const m = /^\s*id\s*=\s*"?([^"]*)"?\s*$/i.exec(grantee);
    return m !== null && ids.has(m[1]!);
  });
}

/**
 * Refuses a write that asks for an ACL granting anyone but the bucket's owner access (a canned ACL such as
 * public-read, or an x-amz-grant-* header naming someone else), as S3 does for a bucket with ACLs disabled:
 * silently storing the object private would leave its writer believing it is shared, or public. A grant to the
 * owner alone passes: tools that copy an object's ACL along with it (s3cmd cp) send the one read here.
 */
export async function refuseAclGrants(
  headers: IncomingHttpHeaders,
  owners: () => Promise<Set<string>>,
  creatingBucket = false,
): Promise<void> {
  const canned = headers['x-amz-acl'];
  const grants = Object.keys(headers).filter((h) => h.startsWith('x-amz-grant-'));
  let refused = typeof canned === 'string' && !OWNER_ONLY_ACLS.has(canned.trim());
  if (!refused && grants.length > 0) {
    const ids = await owners();
    refused = grants.some((h) => !grantsOnlyTo(String(headers[h]), ids));
  }
  if (!refused) return;
  if (creatingBucket) {
    throw new S3Error(
      'InvalidBucketAclWithObjectOwnership',
      400,
      "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
    );
  }
  throw aclNotSupported();
}

/** The access keys that own a bucket. */
export function bucketOwners(bucket: BucketRecord): Set<string> {
  return ownerIds(bucket.permissions);
}
