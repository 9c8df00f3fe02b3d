// api/s3/router: which S3 operation a request is, from its method, bucket/key and sub-resources.
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { unsetSettingDelete, unsetSettingRead } from './bucket-settings.js';

export type Operation =
  | 'ListBuckets'
  | 'CreateBucket'
  | 'HeadBucket'
  | 'DeleteBucket'
  | 'GetBucketLocation'
  | 'GetBucketVersioning'
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
  | 'Options';

// Bucket and object sub-resources coffre does not build: refused with NotImplemented, never mistaken for a
// plain GET/PUT of the bucket or object. Reading (or deleting) the unset ones is answered first, by
// bucket-settings.
const UNSUPPORTED_SUBRESOURCES = [
  'acl',
  'policy',
  'policyStatus',
  'lifecycle',
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
  'object-lock',
  'legal-hold',
  'retention',
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
};
const OBJECT_SUBRESOURCES: SubresourceOperations = {
  acl: { GET: 'GetObjectAcl', PUT: 'PutObjectAcl' },
  tagging: { GET: 'GetObjectTagging', PUT: 'PutObjectTagging', DELETE: 'DeleteObjectTagging' },
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
        if (has('versioning')) throw S3Errors.notImplemented('bucket versioning');
        return 'CreateBucket';
      case 'GET':
        if (has('location')) return 'GetBucketLocation';
        if (has('versioning')) return 'GetBucketVersioning';
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
  for (const sub of UNSUPPORTED_SUBRESOURCES.concat('versions'))
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
