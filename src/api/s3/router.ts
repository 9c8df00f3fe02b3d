// api/s3/router: which S3 operation a request is, from its method, bucket/key and sub-resources.
import { S3Error, S3Errors } from '../../util/s3-error.js';
import {
  unsetSettingDelete,
  unsetSettingDeleteAction,
  unsetSettingRead,
  unsetSettingReadAction,
} from './bucket-settings.js';

export type Operation =
  | 'ListBuckets'
  | 'CreateBucket'
  | 'HeadBucket'
  | 'DeleteBucket'
  | 'GetBucketLocation'
  | 'GetBucketVersioning'
  | 'PutBucketVersioning'
  | 'PutBucketLifecycle'
  | 'GetBucketLifecycle'
  | 'DeleteBucketLifecycle'
  | 'GetObjectLockConfiguration'
  | 'PutObjectLockConfiguration'
  | 'GetObjectRetention'
  | 'PutObjectRetention'
  | 'GetObjectLegalHold'
  | 'PutObjectLegalHold'
  | 'GetBucketAcl'
  | 'PutBucketAcl'
  | 'GetBucketSetting'
  | 'DeleteBucketSetting'
  | 'PutBucketCors'
  | 'PutBucketEncryption'
  | 'GetBucketEncryption'
  | 'DeleteBucketEncryption'
  | 'GetBucketCors'
  | 'DeleteBucketCors'
  | 'ListObjects'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'ListObjectVersions'
  | 'DeleteObjects'
  | 'PostObject'
  | 'PutObject'
  | 'CopyObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'UploadPartCopy'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts'
  | 'GetObjectAcl'
  | 'PutObjectAcl'
  | 'GetObjectTagging'
  | 'PutObjectTagging'
  | 'DeleteObjectTagging'
  | 'PutBucketTagging'
  | 'GetBucketTagging'
  | 'DeleteBucketTagging'
  | 'PutBucketPolicy'
  | 'GetBucketPolicy'
  | 'DeleteBucketPolicy'
  | 'GetBucketPolicyStatus'
  | 'Options';

/**
 * How a request proves who sends it: not at all (a CORS preflight is answered from the bucket's CORS rules
 * alone), a SigV4 signature (Authorization header or presigned query), or a browser form's signed policy.
 */
export type Authentication = 'none' | 'signature' | 'post-policy';

/**
 * The permission an operation needs on the bucket it names (coffre's per-key bucket permissions, as Garage's:
 * read, write, owner; the owner permission includes the other two). 'account': the operation names no bucket
 * of the key's (ListBuckets lists the key's own, CreateBucket is allowed by the key's create-bucket right).
 */
export type BucketNeed = 'none' | 'account' | 'read' | 'write' | 'owner';

/**
 * The S3 action a bucket policy names the operation by (policy.ts): one name, or one chosen by the request's
 * sub-resource (the unset settings).
 */
export type PolicyAction = string | ((query: URLSearchParams) => string);

export interface Authorization {
  readonly authentication: Authentication;
  readonly bucket: BucketNeed;
  /** The operation also reads the object named by x-amz-copy-source, which needs read on that bucket. */
  readonly sourceRead?: true;
  /** What a bucket policy calls the operation; its object-version form (s3:GetObjectVersion) is authorize.ts's. */
  readonly action: PolicyAction;
}

const signed = <B extends BucketNeed, A extends PolicyAction>(bucket: B, action: A) =>
  ({ authentication: 'signature', bucket, action }) as const;
const READ = <A extends PolicyAction>(action: A) => signed('read', action);
const WRITE = <A extends PolicyAction>(action: A) => signed('write', action);
const OWNER = <A extends PolicyAction>(action: A) => signed('owner', action);
const ACCOUNT = <A extends PolicyAction>(action: A) => signed('account', action);
const COPY = {
  authentication: 'signature',
  bucket: 'write',
  sourceRead: true,
  action: 's3:PutObject',
} as const;

/**
 * Every operation's authorization, checked by the server once, before the handler runs: a handler receives
 * the bucket (and the source bucket of a copy) already resolved and allowed. Reads need read; object writes
 * need write; settings of the bucket itself (ACL, CORS, encryption, tags, policy, unset settings) and deleting
 * it need owner — or a bucket policy granting the action (authorize.ts says how the two combine).
 */
export const AUTHORIZATION = {
  Options: { authentication: 'none', bucket: 'none', action: 's3:GetObject' },
  ListBuckets: ACCOUNT('s3:ListAllMyBuckets'),
  CreateBucket: ACCOUNT('s3:CreateBucket'),
  HeadBucket: READ('s3:ListBucket'),
  DeleteBucket: OWNER('s3:DeleteBucket'),
  GetBucketLocation: READ('s3:GetBucketLocation'),
  GetBucketVersioning: READ('s3:GetBucketVersioning'),
  PutBucketVersioning: OWNER('s3:PutBucketVersioning'),
  PutBucketLifecycle: OWNER('s3:PutLifecycleConfiguration'),
  GetBucketLifecycle: READ('s3:GetLifecycleConfiguration'),
  DeleteBucketLifecycle: OWNER('s3:PutLifecycleConfiguration'),
  GetObjectLockConfiguration: READ('s3:GetBucketObjectLockConfiguration'),
  PutObjectLockConfiguration: OWNER('s3:PutBucketObjectLockConfiguration'),
  // Placing a retention or legal hold protects data, and is a write; lifting a GOVERNANCE retention early
  // needs the owner permission besides (x-amz-bypass-governance-retention, object-lock.ts).
  GetObjectRetention: READ('s3:GetObjectRetention'),
  PutObjectRetention: WRITE('s3:PutObjectRetention'),
  GetObjectLegalHold: READ('s3:GetObjectLegalHold'),
  PutObjectLegalHold: WRITE('s3:PutObjectLegalHold'),
  GetBucketAcl: READ('s3:GetBucketAcl'),
  PutBucketAcl: OWNER('s3:PutBucketAcl'),
  GetBucketSetting: READ(unsetSettingReadAction),
  DeleteBucketSetting: OWNER(unsetSettingDeleteAction),
  PutBucketCors: OWNER('s3:PutBucketCORS'),
  GetBucketCors: READ('s3:GetBucketCORS'),
  DeleteBucketCors: OWNER('s3:PutBucketCORS'),
  PutBucketEncryption: OWNER('s3:PutEncryptionConfiguration'),
  GetBucketEncryption: READ('s3:GetEncryptionConfiguration'),
  DeleteBucketEncryption: OWNER('s3:PutEncryptionConfiguration'),
  PutBucketTagging: OWNER('s3:PutBucketTagging'),
  GetBucketTagging: READ('s3:GetBucketTagging'),
  DeleteBucketTagging: OWNER('s3:PutBucketTagging'),
  PutBucketPolicy: OWNER('s3:PutBucketPolicy'),
  GetBucketPolicy: READ('s3:GetBucketPolicy'),
  DeleteBucketPolicy: OWNER('s3:DeleteBucketPolicy'),
  GetBucketPolicyStatus: READ('s3:GetBucketPolicyStatus'),
  ListObjects: READ('s3:ListBucket'),
  ListObjectsV2: READ('s3:ListBucket'),
  ListMultipartUploads: READ('s3:ListBucketMultipartUploads'),
  ListObjectVersions: READ('s3:ListBucketVersions'),
  // Allowed or refused key by key (delete.ts), as S3 does: the batch itself needs only a way in.
  DeleteObjects: WRITE('s3:DeleteObject'),
  PostObject: { authentication: 'post-policy', bucket: 'write', action: 's3:PutObject' },
  PutObject: WRITE('s3:PutObject'),
  CopyObject: COPY,
  GetObject: READ('s3:GetObject'),
  HeadObject: READ('s3:GetObject'),
  DeleteObject: WRITE('s3:DeleteObject'),
  CreateMultipartUpload: WRITE('s3:PutObject'),
  UploadPart: WRITE('s3:PutObject'),
  UploadPartCopy: COPY,
  CompleteMultipartUpload: WRITE('s3:PutObject'),
  AbortMultipartUpload: WRITE('s3:AbortMultipartUpload'),
  ListParts: READ('s3:ListMultipartUploadParts'),
  GetObjectAcl: READ('s3:GetObjectAcl'),
  PutObjectAcl: WRITE('s3:PutObjectAcl'),
  GetObjectTagging: READ('s3:GetObjectTagging'),
  PutObjectTagging: WRITE('s3:PutObjectTagging'),
  DeleteObjectTagging: WRITE('s3:DeleteObjectTagging'),
} as const satisfies Record<Operation, Authorization>;

/** The S3 action a bucket policy is asked about for this operation and request. */
export function policyActionOf(operation: Operation, query: URLSearchParams): string {
  const action: PolicyAction = AUTHORIZATION[operation].action;
  return typeof action === 'string' ? action : action(query);
}

export const OPERATIONS = Object.keys(AUTHORIZATION) as Operation[];

type Table = typeof AUTHORIZATION;
type OperationsWhere<Condition> = { [O in Operation]: Table[O] extends Condition ? O : never }[Operation];
/** Operations answered without authentication (a CORS preflight). */
export type UnauthenticatedOperation = OperationsWhere<{ authentication: 'none' }>;
/** Operations authenticated by a browser form's signed policy. */
export type PostPolicyOperation = OperationsWhere<{ authentication: 'post-policy' }>;
/** Signed operations that name no bucket of the key's (handled with the key alone). */
export type AccountOperation = OperationsWhere<{ authentication: 'signature'; bucket: 'account' }>;
/** Signed operations that also read the object named by x-amz-copy-source. */
export type CopyOperation = OperationsWhere<{ authentication: 'signature'; sourceRead: true }>;
/** Signed operations on one bucket the key must hold a permission on. */
export type BucketOperation = Exclude<
  OperationsWhere<{ authentication: 'signature' }>,
  AccountOperation | CopyOperation
>;

export function isUnauthenticated(op: Operation): op is UnauthenticatedOperation {
  return AUTHORIZATION[op].authentication === 'none';
}

export function isPostPolicyOperation(op: Operation): op is PostPolicyOperation {
  return AUTHORIZATION[op].authentication === 'post-policy';
}

export function isAccountOperation(op: Operation): op is AccountOperation {
  return AUTHORIZATION[op].authentication === 'signature' && AUTHORIZATION[op].bucket === 'account';
}

export function isCopyOperation(op: Operation): op is CopyOperation {
  return AUTHORIZATION[op].authentication === 'signature' && 'sourceRead' in AUTHORIZATION[op];
}

// Bucket and object sub-resources coffre does not build: refused with NotImplemented, never mistaken for a
// plain GET/PUT of the bucket or object. Reading (or deleting) the unset ones is answered first, by
// bucket-settings.
const UNSUPPORTED_SUBRESOURCES = [
  'acl',
  'tagging',
  'website',
  'replication',
  'logging',
  'notification',
  'requestPayment',
  'analytics',
  'inventory',
  'metrics',
  'intelligent-tiering',
  'accelerate',
  'restore',
  'select',
  'torrent',
  'ownershipControls',
  'publicAccessBlock',
  'attributes',
];

type SubresourceOperations = Record<string, Partial<Record<string, Operation>>>;

// Sub-resources with operations of their own, by method (checked in this order; a method not listed here
// goes on to the checks below).
const BUCKET_SUBRESOURCES: SubresourceOperations = {
  acl: { GET: 'GetBucketAcl', PUT: 'PutBucketAcl' },
  tagging: { GET: 'GetBucketTagging', PUT: 'PutBucketTagging', DELETE: 'DeleteBucketTagging' },
  encryption: { GET: 'GetBucketEncryption', PUT: 'PutBucketEncryption', DELETE: 'DeleteBucketEncryption' },
  versioning: { GET: 'GetBucketVersioning', PUT: 'PutBucketVersioning' },
  lifecycle: { GET: 'GetBucketLifecycle', PUT: 'PutBucketLifecycle', DELETE: 'DeleteBucketLifecycle' },
  'object-lock': { GET: 'GetObjectLockConfiguration', PUT: 'PutObjectLockConfiguration' },
  policy: { GET: 'GetBucketPolicy', PUT: 'PutBucketPolicy', DELETE: 'DeleteBucketPolicy' },
  policyStatus: { GET: 'GetBucketPolicyStatus' },
};
const OBJECT_SUBRESOURCES: SubresourceOperations = {
  acl: { GET: 'GetObjectAcl', PUT: 'PutObjectAcl' },
  tagging: { GET: 'GetObjectTagging', PUT: 'PutObjectTagging', DELETE: 'DeleteObjectTagging' },
  retention: { GET: 'GetObjectRetention', PUT: 'PutObjectRetention' },
  'legal-hold': { GET: 'GetObjectLegalHold', PUT: 'PutObjectLegalHold' },
};

function subresourceOperation(
  table: SubresourceOperations,
  query: URLSearchParams,
  method: string,
): Operation | undefined {
  for (const [sub, operations] of Object.entries(table)) {
    const operation = query.has(sub) ? operations[method] : undefined;
    if (operation) return operation;
  }
  return undefined;
}

export function routeRequest(
  method: string,
  bucket: string | undefined,
  key: string | undefined,
  query: URLSearchParams,
  headers: Record<string, string | string[] | undefined>,
): Operation {
  const has = (name: string) => query.has(name);
  if (method === 'OPTIONS') return 'Options';
  if (bucket === undefined) {
    if (method === 'GET') return 'ListBuckets';
    throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
  }
  if (key === undefined) {
    const settingOperation = subresourceOperation(BUCKET_SUBRESOURCES, query, method);
    if (settingOperation) return settingOperation;
    if (method === 'GET' && unsetSettingRead(query)) return 'GetBucketSetting';
    if (method === 'DELETE' && unsetSettingDelete(query)) return 'DeleteBucketSetting';
    for (const sub of UNSUPPORTED_SUBRESOURCES) if (has(sub)) throw S3Errors.notImplemented(`bucket ?${sub}`);
    switch (method) {
      case 'PUT':
        if (has('cors')) return 'PutBucketCors';
        return 'CreateBucket';
      case 'GET':
        if (has('location')) return 'GetBucketLocation';
        if (has('cors')) return 'GetBucketCors';
        if (has('uploads')) return 'ListMultipartUploads';
        if (has('versions')) return 'ListObjectVersions';
        if (query.get('list-type') === '2') return 'ListObjectsV2';
        if (query.has('list-type'))
          throw S3Errors.invalidArgument('Invalid list type', { ArgumentName: 'list-type' });
        return 'ListObjects';
      case 'HEAD':
        return 'HeadBucket';
      case 'DELETE':
        if (has('cors')) return 'DeleteBucketCors';
        return 'DeleteBucket';
      case 'POST': {
        if (has('delete')) return 'DeleteObjects';
        const ct = String(headers['content-type'] ?? '');
        if (ct.toLowerCase().startsWith('multipart/form-data')) return 'PostObject';
        break;
      }
    }
    throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
  }
  // No stored key is longer, and a longer one would not fit in a metadata key: refused for every operation.
  checkObjectKey(key);
  const settingOperation = subresourceOperation(OBJECT_SUBRESOURCES, query, method);
  if (settingOperation) return settingOperation;
  for (const sub of UNSUPPORTED_SUBRESOURCES.concat('versions', 'policy', 'policyStatus'))
    if (has(sub)) throw S3Errors.notImplemented(`object ?${sub}`);
  switch (method) {
    case 'PUT':
      if (has('uploadId') || has('partNumber')) {
        return headers['x-amz-copy-source'] !== undefined ? 'UploadPartCopy' : 'UploadPart';
      }
      if (headers['x-amz-copy-source'] !== undefined) return 'CopyObject';
      return 'PutObject';
    case 'GET':
      if (has('uploadId')) return 'ListParts';
      return 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'DELETE':
      if (has('uploadId')) return 'AbortMultipartUpload';
      return 'DeleteObject';
    case 'POST':
      if (has('uploads')) return 'CreateMultipartUpload';
      if (has('uploadId')) return 'CompleteMultipartUpload';
      break;
  }
  throw new S3Error('MethodNotAllowed', 405, 'The specified method is not allowed against this resource.');
}

// Bucket naming rules (S3's, for new buckets).
export function checkBucketName(name: string): void {
  const ok =
    name.length >= 3 &&
    name.length <= 63 &&
    /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name) &&
    !name.includes('..') &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name) &&
    !name.startsWith('xn--') &&
    !name.endsWith('-s3alias');
  if (!ok)
    throw new S3Error('InvalidBucketName', 400, 'The specified bucket is not valid.', { BucketName: name });
}

export const MAX_KEY_BYTES = 1024;

export function checkObjectKey(key: string): void {
  if (key.length === 0) throw S3Errors.invalidArgument('object key must not be empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new S3Error('KeyTooLongError', 400, 'Your key is too long');
  }
}
