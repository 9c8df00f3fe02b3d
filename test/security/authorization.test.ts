// Authorization of every S3 operation, attacked through a running node: each operation of the router's table is
// sent by keys holding no, read, write, read+write and owner permission on a bucket (signed in the header and
// presigned), by a key that may only create buckets, and unsigned. What the permission allows succeeds; the rest
// is 403 AccessDenied and changes nothing. The walk is driven by the router's own list of operations, so an
// operation added without a case here fails this test. Refusals must not tell whether a bucket exists, nor who
// owns it: a write-only key once set a bucket ACL, an unauthorized write learned the bucket's owners from the
// ACL check, and an unsigned PostObject learned that a bucket was missing.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { AUTHORIZATION, OPERATIONS, type Operation } from '../../src/api/s3/router.js';
import { signer, toQueryString } from '../api/s3/sigv4-client.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { mustCli, operatorKey } from './sse-s3-helpers.js';

const B = 'authz';
const OTHER = 'authz-other';
const REGION = 'us-east-1';

type Right = 'read' | 'write' | 'owner';
interface Perm {
  read: boolean;
  write: boolean;
  owner: boolean;
}

interface Caller {
  name: string;
  key?: { id: string; secret: string };
  presigned?: boolean;
  perm: Perm;
  createBucket: boolean;
}

interface Req {
  method: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer;
  // A PostObject form: built and signed with the caller's key (unsigned: without policy).
  form?: { key: string; file: string };
}

interface Answer {
  status: number;
  code?: string;
  text: string;
}

interface State {
  uploadId?: string;
  partEtag?: string;
}

/** What the test expects an operation to need, written here independently of the server's table. */
type Need = 'none' | 'account' | Right;

interface Case {
  need: Need;
  sourceRead?: true;
  request: (s: State, caller: Caller) => Req;
  // The status of an allowed request (a few are allowed yet fail for a reason that is no permission's).
  ok: number;
  setup?: (s: State) => Promise<void>;
  // More than the common snapshot to check after a refusal.
  unchanged?: (s: State, caller: Caller) => Promise<void>;
}

let server: TestServer;
let owner: Caller;
const callers: Caller[] = [];
const state: State = {};

const NO = { read: false, write: false, owner: false };

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function codeOf(text: string): string | undefined {
  return /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
}

function amzDate(d = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function postForm(caller: Caller, bucket: string, form: { key: string; file: string }) {
  const boundary = '----coffreauthz' + Math.random().toString(16).slice(2);
  const fields: [string, string][] = [['key', form.key]];
  if (caller.key) {
    const date = amzDate();
    const credential = `${caller.key.id}/${date.slice(0, 8)}/${REGION}/s3/aws4_request`;
    const policy = Buffer.from(
      JSON.stringify({
        expiration: new Date(Date.now() + 3600_000).toISOString(),
        conditions: [
          { bucket },
          ['starts-with', '$key', ''],
          { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
          { 'x-amz-credential': credential },
          { 'x-amz-date': date },
        ],
      }),
    ).toString('base64');
    let signing: Buffer = Buffer.from(`AWS4${caller.key.secret}`);
    for (const part of [date.slice(0, 8), REGION, 's3', 'aws4_request'])
      signing = createHmac('sha256', signing).update(part).digest();
    fields.push(
      ['policy', policy],
      ['x-amz-algorithm', 'AWS4-HMAC-SHA256'],
      ['x-amz-credential', credential],
      ['x-amz-date', date],
      ['x-amz-signature', createHmac('sha256', signing).update(policy).digest('hex')],
    );
  }
  let body = '';
  for (const [name, value] of fields)
    body += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  body += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\nContent-Type: text/plain\r\n\r\n${form.file}\r\n--${boundary}--\r\n`;
  return { body: Buffer.from(body), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function send(caller: Caller, r: Req): Promise<Answer> {
  const host = `127.0.0.1:${server.s3Port}`;
  let body = r.body;
  let headers: Record<string, string> = { ...r.headers };
  let query: Record<string, string> = { ...r.query };
  if (r.form) {
    const form = postForm(caller, r.path.split('/')[1]!, r.form);
    body = form.body;
    headers['content-type'] = form.contentType;
  } else if (caller.key) {
    const request = {
      method: r.method,
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: server.s3Port,
      path: r.path,
      query,
      headers: {
        host,
        'x-amz-content-sha256': caller.presigned ? 'UNSIGNED-PAYLOAD' : sha256(body ?? Buffer.alloc(0)),
        ...headers,
      },
    };
    const sign = signer({ accessKey: caller.key.id, secret: caller.key.secret });
    // A presigned URL carries the operation's own x-amz-* headers as signed headers (as the SDK's presigner
    // does for x-amz-copy-source), not hoisted into the query.
    const unhoistableHeaders = new Set(Object.keys(headers).filter((h) => h.startsWith('x-amz-')));
    const signed = caller.presigned
      ? await sign.presign(request, { expiresIn: 600, unhoistableHeaders })
      : await sign.sign(request);
    headers = { ...(signed.headers as Record<string, string>) };
    delete headers.host;
    query = (signed.query ?? {}) as Record<string, string>;
  }
  const qs = toQueryString(query);
  const res = await fetch(`http://${host}${r.path}${qs ? '?' + qs : ''}`, {
    method: r.method,
    headers,
    body: r.method === 'GET' || r.method === 'HEAD' ? undefined : (body ?? Buffer.alloc(0)),
  });
  const text = await res.text();
  return { status: res.status, code: codeOf(text), text };
}

async function asOwner(r: Req, expect: number): Promise<Answer> {
  const a = await send(owner, r);
  assert.equal(
    a.status,
    expect,
    `${r.method} ${r.path} ${JSON.stringify(r.query ?? {})} as the owner: ${a.text}`,
  );
  return a;
}

const xmlMd5 = (b: Buffer) => ({ 'content-md5': createHash('md5').update(b).digest('base64') });
const CORS = Buffer.from(
  '<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>',
);
const ENCRYPTION = Buffer.from(
  '<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>',
);
// A policy that grants nothing to anyone (its one statement denies an action no case uses), so that the
// permissions alone decide every other case while it is in place.
const POLICY = Buffer.from(
  JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Deny', Principal: '*', Action: 's3:PutBucketWebsite', Resource: `arn:aws:s3:::${B}` },
    ],
  }),
);
const tagging = (k: string, v: string) =>
  Buffer.from(`<Tagging><TagSet><Tag><Key>${k}</Key><Value>${v}</Value></Tag></TagSet></Tagging>`);

const putVictim = () => asOwner({ method: 'PUT', path: `/${B}/victim`, body: Buffer.from('victim') }, 200);
async function newUpload(s: State, withPart = false) {
  const created = await asOwner({ method: 'POST', path: `/${B}/mpu`, query: { uploads: '' } }, 200);
  s.uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.text)![1]!;
  if (withPart) {
    const part = await send(owner, {
      method: 'PUT',
      path: `/${B}/mpu`,
      query: { partNumber: '1', uploadId: s.uploadId },
      body: Buffer.from('the only part'),
    });
    assert.equal(part.status, 200, part.text);
    s.partEtag = (await partEtagOf(`/${B}/mpu`, s.uploadId)) ?? '';
  }
}
async function partEtagOf(path: string, uploadId: string): Promise<string | undefined> {
  const parts = await asOwner({ method: 'GET', path, query: { uploadId } }, 200);
  return /<ETag>([^<]+)<\/ETag>/.exec(parts.text)?.[1]?.replace(/&quot;/g, '"');
}

/** Every operation of the router, with a request an allowed caller succeeds with. */
// A bucket setting is in place before a case that reads or deletes it runs, so a refusal has something to
// protect.
const settingAsOwner = (subresource: string, body: Buffer, status: number): Promise<undefined> =>
  asOwner(
    { method: 'PUT', path: `/${B}`, query: { [subresource]: '' }, headers: xmlMd5(body), body },
    status,
  ).then(() => undefined);
const tagBucketAsOwner = () => settingAsOwner('tagging', tagging('team', 'a'), 204);
const tagProbeAsOwner = (): Promise<undefined> =>
  asOwner({ method: 'PUT', path: `/${B}/probe`, query: { tagging: '' }, body: tagging('k', 'v') }, 200).then(
    () => undefined,
  );

const LIFECYCLE = Buffer.from(
  '<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>' +
    '<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>',
);
const lifecycleAsOwner = (): Promise<undefined> =>
  asOwner({ method: 'PUT', path: `/${B}`, query: { lifecycle: '' }, body: LIFECYCLE }, 200).then(
    () => undefined,
  );

const CASES: Record<Operation, Case> = {
  Options: {
    need: 'none',
    request: () => ({
      method: 'OPTIONS',
      path: `/${B}/probe`,
      headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'GET' },
    }),
    ok: 403, // no rule allows that origin: the same answer for everyone, as for a missing bucket
  },
  ListBuckets: { need: 'account', request: () => ({ method: 'GET', path: '/' }), ok: 200 },
  CreateBucket: {
    need: 'account',
    request: (_s, c) => ({ method: 'PUT', path: `/authz-made-by-${c.name}` }),
    ok: 200,
    unchanged: async (_s, c) => {
      // The name is still free: the owner can take it.
      await asOwner({ method: 'PUT', path: `/authz-made-by-${c.name}` }, 200);
      await asOwner({ method: 'DELETE', path: `/authz-made-by-${c.name}` }, 204);
    },
  },
  HeadBucket: { need: 'read', request: () => ({ method: 'HEAD', path: `/${B}` }), ok: 200 },
  DeleteBucket: { need: 'owner', request: () => ({ method: 'DELETE', path: `/${B}` }), ok: 409 }, // not empty
  GetBucketLocation: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { location: '' } }),
    ok: 200,
  },
  GetBucketVersioning: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { versioning: '' } }),
    ok: 200,
  },
  PutBucketVersioning: {
    need: 'owner',
    request: () => ({
      method: 'PUT',
      path: `/${B}`,
      query: { versioning: '' },
      body: Buffer.from('<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>'),
    }),
    ok: 200,
  },
  PutBucketLifecycle: {
    need: 'owner',
    request: () => ({ method: 'PUT', path: `/${B}`, query: { lifecycle: '' }, body: LIFECYCLE }),
    ok: 200,
  },
  GetBucketLifecycle: {
    need: 'read',
    setup: lifecycleAsOwner,
    request: () => ({ method: 'GET', path: `/${B}`, query: { lifecycle: '' } }),
    ok: 200,
  },
  DeleteBucketLifecycle: {
    need: 'owner',
    setup: lifecycleAsOwner,
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { lifecycle: '' } }),
    ok: 204,
  },
  // The bucket has no object lock: allowed callers are told so (a state, not a permission).
  GetObjectLockConfiguration: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { 'object-lock': '' } }),
    ok: 404,
  },
  PutObjectLockConfiguration: {
    need: 'owner',
    request: () => ({
      method: 'PUT',
      path: `/${B}`,
      query: { 'object-lock': '' },
      body: Buffer.from(
        '<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>',
      ),
    }),
    ok: 409,
  },
  GetObjectRetention: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}/probe`, query: { retention: '' } }),
    ok: 400,
  },
  PutObjectRetention: {
    need: 'write',
    request: () => ({
      method: 'PUT',
      path: `/${B}/probe`,
      query: { retention: '' },
      body: Buffer.from(
        `<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>${new Date(Date.now() + 86400_000).toISOString()}</RetainUntilDate></Retention>`,
      ),
    }),
    ok: 400,
  },
  GetObjectLegalHold: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}/probe`, query: { 'legal-hold': '' } }),
    ok: 400,
  },
  PutObjectLegalHold: {
    need: 'write',
    request: () => ({
      method: 'PUT',
      path: `/${B}/probe`,
      query: { 'legal-hold': '' },
      body: Buffer.from('<LegalHold><Status>ON</Status></LegalHold>'),
    }),
    ok: 400,
  },
  GetBucketAcl: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { acl: '' } }),
    ok: 200,
  },
  PutBucketAcl: {
    need: 'owner',
    request: () => ({
      method: 'PUT',
      path: `/${B}`,
      query: { acl: '' },
      headers: { 'x-amz-acl': 'private' },
    }),
    ok: 200,
  },
  GetBucketSetting: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { logging: '' } }),
    ok: 200,
  },
  DeleteBucketSetting: {
    need: 'owner',
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { website: '' } }),
    ok: 204,
  },
  PutBucketPolicy: {
    need: 'owner',
    setup: () =>
      asOwner({ method: 'DELETE', path: `/${B}`, query: { policy: '' } }, 204).then(() => undefined),
    request: () => ({ method: 'PUT', path: `/${B}`, query: { policy: '' }, body: POLICY }),
    ok: 204,
    unchanged: async () => {
      await asOwner({ method: 'GET', path: `/${B}`, query: { policy: '' } }, 404);
    },
  },
  GetBucketPolicy: {
    need: 'read',
    setup: () => settingAsOwner('policy', POLICY, 204),
    request: () => ({ method: 'GET', path: `/${B}`, query: { policy: '' } }),
    ok: 200,
  },
  DeleteBucketPolicy: {
    need: 'owner',
    setup: () => settingAsOwner('policy', POLICY, 204),
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { policy: '' } }),
    ok: 204,
    unchanged: async () => {
      await asOwner({ method: 'GET', path: `/${B}`, query: { policy: '' } }, 200);
    },
  },
  GetBucketPolicyStatus: {
    need: 'read',
    setup: () => settingAsOwner('policy', POLICY, 204),
    request: () => ({ method: 'GET', path: `/${B}`, query: { policyStatus: '' } }),
    ok: 200,
  },
  PutBucketCors: {
    need: 'owner',
    setup: () => asOwner({ method: 'DELETE', path: `/${B}`, query: { cors: '' } }, 204).then(() => undefined),
    request: () => ({ method: 'PUT', path: `/${B}`, query: { cors: '' }, headers: xmlMd5(CORS), body: CORS }),
    ok: 200,
  },
  GetBucketCors: {
    need: 'read',
    setup: () => settingAsOwner('cors', CORS, 200),
    request: () => ({ method: 'GET', path: `/${B}`, query: { cors: '' } }),
    ok: 200,
  },
  DeleteBucketCors: {
    need: 'owner',
    setup: () => settingAsOwner('cors', CORS, 200),
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { cors: '' } }),
    ok: 204,
  },
  PutBucketEncryption: {
    need: 'owner',
    setup: () =>
      asOwner({ method: 'DELETE', path: `/${B}`, query: { encryption: '' } }, 204).then(() => undefined),
    request: () => ({
      method: 'PUT',
      path: `/${B}`,
      query: { encryption: '' },
      headers: xmlMd5(ENCRYPTION),
      body: ENCRYPTION,
    }),
    ok: 200,
  },
  GetBucketEncryption: {
    need: 'read',
    setup: () => settingAsOwner('encryption', ENCRYPTION, 200),
    request: () => ({ method: 'GET', path: `/${B}`, query: { encryption: '' } }),
    ok: 200,
  },
  DeleteBucketEncryption: {
    need: 'owner',
    setup: () => settingAsOwner('encryption', ENCRYPTION, 200),
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { encryption: '' } }),
    ok: 204,
  },
  PutBucketTagging: {
    need: 'owner',
    request: () => ({
      method: 'PUT',
      path: `/${B}`,
      query: { tagging: '' },
      headers: xmlMd5(tagging('team', 'mallory')),
      body: tagging('team', 'mallory'),
    }),
    ok: 204,
    setup: tagBucketAsOwner,
  },
  GetBucketTagging: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { tagging: '' } }),
    ok: 200,
    setup: tagBucketAsOwner,
  },
  DeleteBucketTagging: {
    need: 'owner',
    request: () => ({ method: 'DELETE', path: `/${B}`, query: { tagging: '' } }),
    ok: 204,
    setup: tagBucketAsOwner,
  },
  ListObjects: { need: 'read', request: () => ({ method: 'GET', path: `/${B}` }), ok: 200 },
  ListObjectsV2: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { 'list-type': '2' } }),
    ok: 200,
  },
  ListMultipartUploads: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { uploads: '' } }),
    ok: 200,
  },
  ListObjectVersions: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}`, query: { versions: '' } }),
    ok: 200,
  },
  DeleteObjects: {
    need: 'write',
    setup: () => putVictim().then(() => undefined),
    request: () => {
      const body = Buffer.from('<Delete><Object><Key>victim</Key></Object></Delete>');
      return { method: 'POST', path: `/${B}`, query: { delete: '' }, headers: xmlMd5(body), body };
    },
    ok: 200,
  },
  PostObject: {
    need: 'write',
    request: (_s, c) => ({ method: 'POST', path: `/${B}`, form: { key: 'posted', file: `by ${c.name}` } }),
    ok: 204,
  },
  PutObject: {
    need: 'write',
    request: (_s, c) => ({ method: 'PUT', path: `/${B}/put-target`, body: Buffer.from(`by ${c.name}`) }),
    ok: 200,
  },
  CopyObject: {
    need: 'write',
    sourceRead: true,
    request: () => ({
      method: 'PUT',
      path: `/${B}/copy-target`,
      headers: { 'x-amz-copy-source': `/${B}/probe` },
    }),
    ok: 200,
  },
  GetObject: { need: 'read', request: () => ({ method: 'GET', path: `/${B}/probe` }), ok: 200 },
  HeadObject: { need: 'read', request: () => ({ method: 'HEAD', path: `/${B}/probe` }), ok: 200 },
  DeleteObject: {
    need: 'write',
    setup: () => putVictim().then(() => undefined),
    request: () => ({ method: 'DELETE', path: `/${B}/victim` }),
    ok: 204,
  },
  CreateMultipartUpload: {
    need: 'write',
    request: () => ({ method: 'POST', path: `/${B}/mpu-new`, query: { uploads: '' } }),
    ok: 200,
  },
  UploadPart: {
    need: 'write',
    setup: (s) => newUpload(s),
    request: (s) => ({
      method: 'PUT',
      path: `/${B}/mpu`,
      query: { partNumber: '1', uploadId: s.uploadId! },
      body: Buffer.from('a part'),
    }),
    ok: 200,
  },
  UploadPartCopy: {
    need: 'write',
    sourceRead: true,
    setup: (s) => newUpload(s),
    request: (s) => ({
      method: 'PUT',
      path: `/${B}/mpu`,
      query: { partNumber: '1', uploadId: s.uploadId! },
      headers: { 'x-amz-copy-source': `/${B}/probe` },
    }),
    ok: 200,
  },
  CompleteMultipartUpload: {
    need: 'write',
    setup: (s) => newUpload(s, true),
    request: (s) => {
      const body = Buffer.from(
        `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${s.partEtag}</ETag></Part></CompleteMultipartUpload>`,
      );
      return { method: 'POST', path: `/${B}/mpu`, query: { uploadId: s.uploadId! }, body };
    },
    ok: 200,
  },
  AbortMultipartUpload: {
    need: 'write',
    setup: (s) => newUpload(s),
    request: (s) => ({ method: 'DELETE', path: `/${B}/mpu`, query: { uploadId: s.uploadId! } }),
    ok: 204,
  },
  ListParts: {
    need: 'read',
    setup: (s) => newUpload(s, true),
    request: (s) => ({ method: 'GET', path: `/${B}/mpu`, query: { uploadId: s.uploadId! } }),
    ok: 200,
  },
  GetObjectAcl: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}/probe`, query: { acl: '' } }),
    ok: 200,
  },
  PutObjectAcl: {
    need: 'write',
    request: () => ({
      method: 'PUT',
      path: `/${B}/probe`,
      query: { acl: '' },
      headers: { 'x-amz-acl': 'private' },
    }),
    ok: 200,
  },
  GetObjectTagging: {
    need: 'read',
    request: () => ({ method: 'GET', path: `/${B}/probe`, query: { tagging: '' } }),
    ok: 200,
  },
  PutObjectTagging: {
    need: 'write',
    request: () => ({
      method: 'PUT',
      path: `/${B}/probe`,
      query: { tagging: '' },
      body: tagging('k', 'mallory'),
    }),
    ok: 200,
    setup: tagProbeAsOwner,
  },
  DeleteObjectTagging: {
    need: 'write',
    request: () => ({ method: 'DELETE', path: `/${B}/probe`, query: { tagging: '' } }),
    ok: 204,
    setup: tagProbeAsOwner,
  },
};

function grants(p: Perm, need: Right): boolean {
  return p[need] || p.owner;
}

function allowed(c: Caller, op: Operation): boolean {
  const { need, sourceRead } = CASES[op];
  if (need === 'none') return true;
  if (!c.key) return false;
  if (need === 'account') return op === 'CreateBucket' ? c.createBucket : true;
  return grants(c.perm, need) && (!sourceRead || grants(c.perm, 'read'));
}

/** What the bucket holds and how it is set, as its owner reads it. */
async function snapshot(s: State): Promise<string[]> {
  const reads: Req[] = [
    { method: 'GET', path: `/${B}`, query: { 'list-type': '2' } },
    { method: 'GET', path: `/${B}`, query: { cors: '' } },
    { method: 'GET', path: `/${B}`, query: { encryption: '' } },
    { method: 'GET', path: `/${B}`, query: { tagging: '' } },
    { method: 'GET', path: `/${B}`, query: { versioning: '' } },
    { method: 'GET', path: `/${B}`, query: { lifecycle: '' } },
    { method: 'GET', path: `/${B}`, query: { uploads: '' } },
    { method: 'GET', path: `/${B}/probe`, query: { tagging: '' } },
    { method: 'GET', path: `/${B}/probe` },
  ];
  if (s.uploadId) reads.push({ method: 'GET', path: `/${B}/mpu`, query: { uploadId: s.uploadId } });
  const out: string[] = [];
  for (const r of reads) {
    const a = await send(owner, r);
    // An error names its request: that part is not the bucket's.
    const text = a.text.replace(/<(RequestId|HostId)>[^<]*<\/\1>/g, '');
    out.push(`${r.path}?${JSON.stringify(r.query ?? {})} → ${a.status} ${text}`);
  }
  return out;
}

async function newKey(name: string, perm: Perm, createBucket = false, presigned = false): Promise<Caller> {
  const args = ['key', 'create', name, '--json', '--config', server.configPath];
  if (createBucket) args.push('--create-bucket');
  const created = await runCoffre(args);
  assert.equal(created.code, 0, created.stderr);
  const key = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  const flags = (['read', 'write', 'owner'] as const).filter((f) => perm[f]).map((f) => `--${f}`);
  if (flags.length > 0) {
    const allow = await runCoffre([
      'bucket',
      'allow',
      B,
      '--key',
      key.accessKeyId,
      ...flags,
      '--config',
      server.configPath,
    ]);
    assert.equal(allow.code, 0, allow.stderr);
  }
  return { name, key: { id: key.accessKeyId, secret: key.secretAccessKey }, perm, createBucket, presigned };
}

before(async () => {
  server = await startServer();
  owner = {
    name: 'owner-of-record',
    key: { id: server.accessKeyId, secret: server.secretAccessKey },
    perm: { read: true, write: true, owner: true },
    createBucket: true,
  };
  const operator = await operatorKey('authz');
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  await asOwner({ method: 'PUT', path: `/${B}` }, 200);
  await asOwner({ method: 'PUT', path: `/${OTHER}` }, 200);
  await asOwner({ method: 'PUT', path: `/${B}/probe`, body: Buffer.from('probe data') }, 200);
  await asOwner({ method: 'PUT', path: `/${OTHER}/secret`, body: Buffer.from('other secret') }, 200);
  callers.push(
    { name: 'unsigned', perm: NO, createBucket: false },
    await newKey('none', NO),
    await newKey('creator', NO, true),
    await newKey('read', { read: true, write: false, owner: false }),
    await newKey('write', { read: false, write: true, owner: false }),
    await newKey('readwrite', { read: true, write: true, owner: false }),
    await newKey('owner', { read: false, write: false, owner: true }),
  );
  const none = callers.find((c) => c.name === 'none')!;
  const read = callers.find((c) => c.name === 'read')!;
  const write = callers.find((c) => c.name === 'write')!;
  callers.push(
    { ...none, name: 'none-presigned', presigned: true },
    { ...read, name: 'read-presigned', presigned: true },
    { ...write, name: 'write-presigned', presigned: true },
  );
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

test("every operation of the router has a case here, needing what the router's table says", () => {
  assert.deepEqual(Object.keys(CASES).sort(), [...OPERATIONS].sort());
  for (const op of OPERATIONS) {
    const table = AUTHORIZATION[op];
    const expected = CASES[op];
    assert.equal(table.bucket, expected.need, `${op}: the permission it needs`);
    assert.equal('sourceRead' in table, expected.sourceRead === true, `${op}: read on the copy source`);
    const authentication =
      expected.need === 'none' ? 'none' : op === 'PostObject' ? 'post-policy' : 'signature';
    assert.equal(table.authentication, authentication, `${op}: how it is authenticated`);
  }
});

test('each operation succeeds for the keys allowed it, and is AccessDenied and changes nothing for the others', async () => {
  const failures: string[] = [];
  for (const op of OPERATIONS) {
    const c = CASES[op];
    assert.ok(c, `no case for ${op}`);
    const answers = new Set<string>();
    for (const caller of callers) {
      await c.setup?.(state);
      const before = await snapshot(state);
      const a = await send(caller, c.request(state, caller));
      const label = `${op} by ${caller.name}`;
      if (c.need === 'none') {
        answers.add(`${a.status} ${a.code}`);
        if (a.status !== c.ok) failures.push(`${label}: ${a.status} ${a.text}`);
      } else if (allowed(caller, op)) {
        if (a.status !== c.ok) failures.push(`${label}: expected ${c.ok}, got ${a.status} ${a.text}`);
      } else {
        const denied =
          a.status === 403 &&
          (a.code === 'AccessDenied' || (a.text === '' && /^HEAD$/.test(c.request(state, caller).method)));
        if (!denied)
          failures.push(`${label}: expected 403 AccessDenied, got ${a.status} ${a.text.slice(0, 300)}`);
        const after = await snapshot(state);
        try {
          assert.deepEqual(after, before);
          await c.unchanged?.(state, caller);
        } catch (e) {
          failures.push(
            `${label}: refused, yet it changed the bucket: ${(e as Error).message.slice(0, 600)}`,
          );
        }
      }
    }
    if (c.need === 'none') assert.equal(answers.size, 1, `${op}: one answer for every caller`);
  }
  assert.deepEqual(failures, []);
});

test('a key without a right on a bucket gets the same AccessDenied whether or not the bucket exists', async () => {
  const none = callers.find((c) => c.name === 'none')!;
  for (const path of [`/${B}`, '/no-such-bucket']) {
    for (const r of <Req[]>[
      { method: 'GET', path, query: { 'list-type': '2' } },
      { method: 'PUT', path: `${path}/k`, body: Buffer.from('x') },
      { method: 'GET', path: `${path}/probe` },
      { method: 'DELETE', path: `${path}/probe` },
      { method: 'PUT', path, query: { acl: '' }, headers: { 'x-amz-acl': 'private' } },
    ]) {
      const a = await send(none, r);
      assert.equal(a.status, 403, `${r.method} ${r.path}: ${a.text}`);
      assert.equal(a.code, 'AccessDenied');
    }
  }
  // A key that may create buckets would learn as much from CreateBucket: it is told NoSuchBucket.
  const creator = callers.find((c) => c.name === 'creator')!;
  const missing = await send(creator, { method: 'GET', path: '/no-such-bucket' });
  assert.equal(missing.code, 'NoSuchBucket', missing.text);
  const existing = await send(creator, { method: 'GET', path: `/${B}` });
  assert.equal(existing.code, 'AccessDenied', existing.text);
});

test('a write-only key cannot set the bucket ACL; the owner can', async () => {
  const write = callers.find((c) => c.name === 'write')!;
  const acl = { method: 'PUT', path: `/${B}`, query: { acl: '' }, headers: { 'x-amz-acl': 'private' } };
  const refused = await send(write, acl);
  assert.equal(refused.status, 403, refused.text);
  assert.equal(refused.code, 'AccessDenied');
  await asOwner(acl, 200);
});

test("a write the key may not make does not learn the bucket's owners from its ACL grants", async () => {
  const none = callers.find((c) => c.name === 'none')!;
  const read = callers.find((c) => c.name === 'read')!;
  for (const caller of [none, read]) {
    for (const grantee of [server.accessKeyId, 'GKnotanowner000000000000']) {
      for (const r of <Req[]>[
        { method: 'PUT', path: `/${B}/granted`, body: Buffer.from('x') },
        { method: 'POST', path: `/${B}/granted`, query: { uploads: '' } },
        { method: 'PUT', path: `/${B}/granted`, headers: { 'x-amz-copy-source': `/${B}/probe` } },
      ]) {
        const a = await send(caller, {
          ...r,
          headers: { ...r.headers, 'x-amz-grant-read': `id="${grantee}"` },
        });
        assert.equal(a.status, 403, `${caller.name} ${r.method} granting ${grantee}: ${a.text}`);
        assert.equal(a.code, 'AccessDenied');
      }
    }
  }
});

test('an unsigned or unauthorized PostObject learns nothing about the bucket before its policy is checked', async () => {
  const unsigned = callers.find((c) => c.name === 'unsigned')!;
  const none = callers.find((c) => c.name === 'none')!;
  for (const caller of [unsigned, none]) {
    for (const bucket of [B, 'no-such-bucket']) {
      const a = await send(caller, {
        method: 'POST',
        path: `/${bucket}`,
        form: { key: 'posted-x', file: 'x' },
      });
      assert.equal(a.status, 403, `${caller.name} POST /${bucket}: ${a.text}`);
      assert.equal(a.code, 'AccessDenied');
    }
  }
  await asOwner({ method: 'HEAD', path: `/${B}/posted-x` }, 404);
});

test('a copy needs read on its source bucket, whether or not that bucket or object exists', async () => {
  const write = callers.find((c) => c.name === 'write')!;
  for (const source of [`/${OTHER}/secret`, `/${OTHER}/missing`, '/no-such-bucket/secret']) {
    for (const r of <Req[]>[
      { method: 'PUT', path: `/${B}/stolen`, headers: { 'x-amz-copy-source': source } },
      {
        method: 'PUT',
        path: `/${B}/stolen`,
        headers: { 'x-amz-copy-source': source, 'x-amz-metadata-directive': 'REPLACE' },
      },
      // Its ACL grants are not looked at before the copy is allowed.
      {
        method: 'PUT',
        path: `/${B}/stolen`,
        headers: { 'x-amz-copy-source': source, 'x-amz-grant-read': 'id="GKnotanowner000000000000"' },
      },
    ]) {
      const a = await send(write, r);
      assert.equal(a.status, 403, `copy from ${source}: ${a.text}`);
      assert.equal(a.code, 'AccessDenied');
    }
  }
  await newUpload(state);
  const part = await send(write, {
    method: 'PUT',
    path: `/${B}/mpu`,
    query: { partNumber: '1', uploadId: state.uploadId! },
    headers: { 'x-amz-copy-source': `/${OTHER}/secret` },
  });
  assert.equal(part.status, 403, part.text);
  assert.equal(part.code, 'AccessDenied');
  await asOwner({ method: 'HEAD', path: `/${B}/stolen` }, 404);
});
