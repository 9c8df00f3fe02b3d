// api/s3/authorize: the one check of a request's right to the buckets it names, made by the server before
// any handler runs; router.ts AUTHORIZATION says what each operation needs.
//
// Two things grant access, as an IAM user's own policy and the bucket's policy both can in S3 (one account):
// coffre's per-key bucket permissions (`coffre bucket allow`: read, write, owner), and the bucket's policy.
// A request is allowed when
//   1. no statement of the bucket policy that matches it denies it — an explicit Deny wins over everything,
//      the owner permission included, except that a key holding owner may always read, replace and delete
//      the policy itself (S3's rule for the account root: nobody locks the owner out for good); and
//   2. its key holds the permission the operation needs on the bucket, or a matching statement allows it.
// An anonymous (unsigned) request holds no permission: only a policy statement whose principal is "*" lets it in.
import { grants, type BucketRight } from '../../model/model.js';
import type { MetadataStore } from '../../model/store.js';
import type { AccessKeyRecord, BucketRecord, Permission } from '../../model/types.js';
import { storedEncryptionOf } from './encryption.js';
import { S3Errors } from '../../util/s3-error.js';
import { evaluatePolicy, parsePolicy, resourceArn, type BucketPolicy, type PolicyRequest } from './policy.js';

export interface AllowedBucket {
  bucket: BucketRecord;
  // The key's own permission on the bucket; all false when only the bucket policy let the request in.
  permission: Permission;
}

export const NO_PERMISSION: Permission = Object.freeze({ read: false, write: false, owner: false });

/** What a request brings that a policy's conditions may ask about, whatever it names. */
export interface RequestFacts {
  headers: Record<string, string | string[] | undefined>;
  query: URLSearchParams;
  secure: boolean;
  clientAddress: string;
  // How it was authenticated: 'REST-HEADER', 'REST-QUERY-STRING' (presigned), 'POST' (form); undefined if not.
  authType?: 'REST-HEADER' | 'REST-QUERY-STRING' | 'POST';
  // TLS version of a TLS connection to this node ('1.3').
  tlsVersion?: string;
  store: MetadataStore;
}

/** One question to a bucket's policy: this action on this resource (an object's key, or the bucket). */
export interface Access {
  action: string;
  key?: string;
}

// Parsed policies by their text: a request asks its bucket's policy without parsing it again.
const PARSED_MAX = 256;
const parsed = new Map<string, BucketPolicy | 'unreadable'>();

/**
 * The bucket's policy, parsed; 'unreadable' if the stored text no longer parses (a damaged record): such a
 * policy denies everything but its owner's policy calls, so that a damaged Deny never turns into an allow.
 */
export function storedPolicy(bucket: BucketRecord): BucketPolicy | 'unreadable' | undefined {
  const text = bucket.policy;
  if (typeof text !== 'string') return undefined;
  const cacheKey = `${bucket.name}\n${text}`;
  let policy = parsed.get(cacheKey);
  if (policy === undefined) {
    try {
      policy = parsePolicy(text, bucket.name);
    } catch {
      policy = 'unreadable';
    }
    if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value!);
    parsed.set(cacheKey, policy);
  }
  return policy;
}

// Header-valued condition keys S3 defines (s3:<header> is the request's header of that name).
const HEADER_KEYS = [
  'x-amz-server-side-encryption',
  'x-amz-server-side-encryption-customer-algorithm',
  'x-amz-server-side-encryption-aws-kms-key-id',
  'x-amz-acl',
  'x-amz-copy-source',
  'x-amz-metadata-directive',
  'x-amz-storage-class',
  'x-amz-content-sha256',
  'x-amz-object-ownership',
  'x-amz-grant-read',
  'x-amz-grant-write',
  'x-amz-grant-read-acp',
  'x-amz-grant-write-acp',
  'x-amz-grant-full-control',
];
const HEADER_KEY_NAMES = new Map(HEADER_KEYS.map((h) => [`s3:${h}`, h]));
// Headers named differently from their condition keys.
const RENAMED_HEADER_KEYS = new Map([
  ['s3:object-lock-mode', 'x-amz-object-lock-mode'],
  ['s3:object-lock-retain-until-date', 'x-amz-object-lock-retain-until-date'],
  ['s3:object-lock-legal-hold', 'x-amz-object-lock-legal-hold'],
  ['aws:useragent', 'user-agent'],
  ['aws:referer', 'referer'],
]);
const LIST_ACTIONS = new Set(['s3:listbucket', 's3:listbucketversions', 's3:listbucketmultipartuploads']);
const LIST_QUERY_KEYS = new Map([
  ['s3:prefix', 'prefix'],
  ['s3:delimiter', 'delimiter'],
  ['s3:max-keys', 'max-keys'],
]);
// Requests that add to a multipart upload carry no encryption header: the upload's encryption, chosen when
// it was created (and checked then), is theirs.
const PART_OPERATIONS = new Set(['UploadPart', 'UploadPartCopy', 'CompleteMultipartUpload']);

function headerValue(headers: RequestFacts['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function policyRequest(
  facts: RequestFacts,
  bucket: BucketRecord,
  key: AccessKeyRecord | undefined,
  access: Access,
  operation: string,
): PolicyRequest {
  const action = access.action.toLowerCase();
  const one = (v: string | undefined) => (v === undefined ? undefined : [v]);
  const now = new Date();
  return {
    keyId: key?.id,
    action: access.action,
    resource: resourceArn(bucket.name, access.key),
    conditionValues: (name: string) => {
      const header = HEADER_KEY_NAMES.get(name) ?? RENAMED_HEADER_KEYS.get(name);
      if (name === 's3:x-amz-server-side-encryption' && PART_OPERATIONS.has(operation))
        return uploadEncryption(facts, bucket, access.key);
      if (header !== undefined) return one(headerValue(facts.headers, header));
      const listParam = LIST_QUERY_KEYS.get(name);
      if (listParam !== undefined)
        return LIST_ACTIONS.has(action) ? one(facts.query.get(listParam) ?? undefined) : undefined;
      switch (name) {
        case 'aws:securetransport':
          return [String(facts.secure)];
        case 'aws:sourceip':
          return [facts.clientAddress];
        case 'aws:currenttime':
          return [now.toISOString()];
        case 'aws:epochtime':
          return [String(Math.floor(now.getTime() / 1000))];
        case 'aws:userid':
          return [key?.id ?? 'anonymous'];
        case 'aws:username':
          return one(key?.name);
        case 'aws:principaltype':
          return [key ? 'User' : 'Anonymous'];
        case 's3:versionid':
          return one(facts.query.get('versionId') ?? undefined);
        case 's3:authtype':
          return one(facts.authType);
        case 's3:signatureversion':
          return facts.authType ? ['AWS4-HMAC-SHA256'] : undefined;
        case 's3:tlsversion':
          return one(facts.tlsVersion);
      }
      return undefined;
    },
  };
}

async function uploadEncryption(
  facts: RequestFacts,
  bucket: BucketRecord,
  key: string | undefined,
): Promise<string[] | undefined> {
  const uploadId = facts.query.get('uploadId');
  if (!uploadId || key === undefined) return undefined;
  try {
    const upload = await facts.store.getUpload(bucket.id, key, uploadId);
    return storedEncryptionOf(upload).kind === 'sse-s3' ? ['AES256'] : undefined;
  } catch {
    return undefined; // no such upload: the handler answers NoSuchUpload, if the request gets that far
  }
}

// S3's own object-version forms of an action, used when the request names a version.
const VERSION_ACTIONS: Record<string, string> = {
  's3:GetObject': 's3:GetObjectVersion',
  's3:DeleteObject': 's3:DeleteObjectVersion',
  's3:GetObjectAcl': 's3:GetObjectVersionAcl',
  's3:PutObjectAcl': 's3:PutObjectVersionAcl',
  's3:GetObjectTagging': 's3:GetObjectVersionTagging',
  's3:PutObjectTagging': 's3:PutObjectVersionTagging',
  's3:DeleteObjectTagging': 's3:DeleteObjectVersionTagging',
  's3:GetObjectAttributes': 's3:GetObjectVersionAttributes',
};

/** The action a policy is asked about: the operation's, in its version form when a version is named. */
export function versionedAction(action: string, versionId: string | null | undefined): string {
  return versionId ? (VERSION_ACTIONS[action] ?? action) : action;
}

const POLICY_CALLS = new Set(['s3:GetBucketPolicy', 's3:PutBucketPolicy', 's3:DeleteBucketPolicy']);

/**
 * Whether the request may do `access` on `bucket` (the rule at the top of this file). `need` is the key
 * permission that grants it without the policy's help.
 */
export async function mayAccess(
  facts: RequestFacts,
  bucket: BucketRecord,
  key: AccessKeyRecord | undefined,
  need: BucketRight,
  access: Access,
  operation = '',
): Promise<boolean> {
  const permission = key ? bucket.permissions[key.id] : undefined;
  const byKey = grants(permission, need);
  const policy = storedPolicy(bucket);
  if (policy === undefined) return byKey;
  if (POLICY_CALLS.has(access.action) && permission?.owner) return true;
  if (policy === 'unreadable') return false;
  const verdict = await evaluatePolicy(policy, policyRequest(facts, bucket, key, access, operation));
  return verdict !== 'deny' && (byKey || verdict === 'allow');
}

/**
 * The bucket named `name` if the request may do `access` on it. A request without the right is refused with
 * AccessDenied whether or not the bucket exists, so that it learns nothing of other keys' buckets; only a
 * key that may create buckets is told NoSuchBucket (CreateBucket would tell it as much).
 */
export async function allowedBucket(
  bucket: BucketRecord | undefined,
  name: string,
  key: AccessKeyRecord | undefined,
  need: BucketRight,
  check: { facts: RequestFacts; access: Access; operation: string },
): Promise<AllowedBucket> {
  if (!bucket) throw key?.allowCreateBucket ? S3Errors.noSuchBucket(name) : S3Errors.accessDenied();
  if (!(await mayAccess(check.facts, bucket, key, need, check.access, check.operation)))
    throw S3Errors.accessDenied();
  return { bucket, permission: (key && bucket.permissions[key.id]) ?? NO_PERMISSION };
}
