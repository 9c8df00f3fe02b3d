import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { S3Error } from '../../../src/util/s3-error.js';
import { parsePostObject, type PostObjectOptions } from '../../../src/api/s3/post-policy.js';
import { ACCESS_KEY, REGION, SECRET_KEY } from './sigv4-client.js';

const NOW = new Date('2026-11-22T12:00:00Z');
const DATE = '20261122';
const CREDENTIAL = `${ACCESS_KEY}/${DATE}/${REGION}/s3/aws4_request`;

const opts: PostObjectOptions = {
  bucket: 'photos',
  region: REGION,
  now: NOW,
  lookupSecret: async (id) => (id === ACCESS_KEY ? SECRET_KEY : undefined),
};

// SigV4 POST signing as a browser-form generator does it: HMAC chain to the signing key, then HMAC of the policy.
function signPolicy(policyB64: string, secret = SECRET_KEY): string {
  let key: Buffer = Buffer.from(`AWS4${secret}`);
  for (const part of [DATE, REGION, 's3', 'aws4_request'])
    key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(policyB64).digest('hex');
}

interface FormSpec {
  fields?: [string, string][];
  policy?: object | string;
  conditions?: unknown[];
  expiration?: string;
  file?: Buffer;
  filename?: string;
  signature?: string;
  omitSignatureFields?: boolean;
}

/** Builds the field list a browser form would post, policy signed unless told otherwise. */
function formFields(spec: FormSpec): [string, string][] {
  const base: [string, string][] = spec.fields ?? [['key', 'user/eric/${filename}']];
  const conditions = spec.conditions ?? [
    { bucket: 'photos' },
    ['starts-with', '$key', 'user/eric/'],
    { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
    { 'x-amz-credential': CREDENTIAL },
    { 'x-amz-date': `${DATE}T000000Z` },
    ['content-length-range', 1, 10 * 1024 * 1024],
  ];
  const policyDoc = spec.policy ?? { expiration: spec.expiration ?? '2026-11-23T00:00:00.000Z', conditions };
  const policy =
    typeof policyDoc === 'string' ? policyDoc : Buffer.from(JSON.stringify(policyDoc)).toString('base64');
  const auth: [string, string][] = spec.omitSignatureFields
    ? []
    : [
        ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
        ['X-Amz-Credential', CREDENTIAL],
        ['X-Amz-Date', `${DATE}T000000Z`],
        ['Policy', policy],
        ['X-Amz-Signature', spec.signature ?? signPolicy(policy)],
      ];
  return [...base, ...auth];
}

/** Encodes the form with the platform's own multipart encoder (undici's FormData), as fetch would send it. */
async function encodeForm(spec: FormSpec): Promise<{ body: Readable; contentType: string }> {
  const fd = new FormData();
  for (const [k, v] of formFields(spec)) fd.append(k, v);
  fd.append('file', new Blob([spec.file ?? Buffer.from('hello')]), spec.filename ?? 'cat.jpg');
  fd.append('ignored-after-file', 'x');
  const res = new Response(fd);
  const contentType = res.headers.get('content-type') ?? '';
  const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
  return { body, contentType };
}

async function collect(stream: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(stream, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

async function rejectsS3(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof S3Error, String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

async function upload(spec: FormSpec, o: PostObjectOptions = opts): Promise<Buffer> {
  const { body, contentType } = await encodeForm(spec);
  const up = await parsePostObject(body, contentType, o);
  return collect(up.fileStream);
}

test('a signed browser form uploads its file, ${filename} substituted', async () => {
  const file = randomBytes(300_000);
  const { body, contentType } = await encodeForm({ file, filename: 'cat.jpg' });
  const up = await parsePostObject(body, contentType, opts);
  assert.equal(up.accessKeyId, ACCESS_KEY);
  assert.equal(up.key, 'user/eric/cat.jpg');
  assert.equal(up.filename, 'cat.jpg');
  assert.equal(up.fields['x-amz-algorithm'], 'AWS4-HMAC-SHA256');
  assert.deepEqual(up.contentLengthRange, { min: 1, max: 10 * 1024 * 1024 });
  assert.ok((await collect(up.fileStream)).equals(file));
});

test('the file is streamed: fields are returned before the body has fully arrived', async () => {
  const boundary = 'XyZboundary123';
  const policy = Buffer.from(
    JSON.stringify({
      expiration: '2026-11-23T00:00:00Z',
      conditions: [
        ['eq', '$key', 'big.bin'],
        ['starts-with', '$x-amz-algorithm', ''],
        ['starts-with', '$x-amz-credential', ''],
        ['starts-with', '$x-amz-date', ''],
        ['starts-with', '$Content-Type', 'application/'],
      ],
    }),
  ).toString('base64');
  const fields: [string, string][] = [
    ['key', 'big.bin'],
    ['Content-Type', 'application/octet-stream'],
    ['x-amz-algorithm', 'AWS4-HMAC-SHA256'],
    ['x-amz-credential', CREDENTIAL],
    ['x-amz-date', `${DATE}T000000Z`],
    ['policy', policy],
    ['x-amz-signature', signPolicy(policy)],
  ];
  let head = '';
  for (const [k, v] of fields)
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`;
  head += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  const body = new PassThrough();
  const file = randomBytes(4 << 20);
  body.write(head);
  body.write(file.subarray(0, 65536));
  const up = await parsePostObject(body, `multipart/form-data; boundary=${boundary}`, opts);
  assert.equal(up.key, 'big.bin');
  assert.equal(up.fileContentType, 'application/octet-stream');
  const received = collect(up.fileStream);
  // Feed the rest in awkward pieces so delimiters could straddle reads.
  for (let i = 65536; i < file.length; i += 100_003)
    body.write(file.subarray(i, Math.min(i + 100_003, file.length)));
  body.end(`\r\n--${boundary}--\r\n`);
  assert.ok((await received).equals(file));
});

test('policy conditions are enforced', async () => {
  await rejectsS3(upload({ expiration: '2026-11-22T11:59:59Z' }), 'AccessDenied', /Policy expired/);
  await rejectsS3(
    upload({ fields: [['key', 'user/alice/${filename}']] }),
    'AccessDenied',
    /Policy Condition failed/,
  );
  await rejectsS3(
    upload({}, { ...opts, bucket: 'other' }),
    'AccessDenied',
    /Policy Condition failed.*bucket/,
  );
  await rejectsS3(
    upload({
      fields: [
        ['key', 'user/eric/${filename}'],
        ['acl', 'public-read'],
      ],
    }),
    'AccessDenied',
    /Extra input fields: acl/,
  );
  // x-ignore- fields need no condition.
  await upload({
    fields: [
      ['key', 'user/eric/${filename}'],
      ['x-ignore-tracking', '1'],
    ],
  });
  await rejectsS3(
    upload({
      conditions: [
        ['starts-with', '$key', ''],
        ['eq', '$success_action_status', '201'],
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': CREDENTIAL },
        { 'x-amz-date': `${DATE}T000000Z` },
      ],
      fields: [
        ['key', 'k'],
        ['success_action_status', '200'],
      ],
    }),
    'AccessDenied',
    /success_action_status/,
  );
});

test('content-length-range is enforced while the file streams', async () => {
  const conditions = (min: number, max: number) => [
    ['starts-with', '$key', ''],
    ['starts-with', '$x-amz-algorithm', ''],
    ['starts-with', '$x-amz-credential', ''],
    ['starts-with', '$x-amz-date', ''],
    ['content-length-range', min, max],
  ];
  const fields: [string, string][] = [['key', 'k']];
  assert.equal((await upload({ fields, conditions: conditions(10, 10), file: Buffer.alloc(10) })).length, 10);
  await rejectsS3(
    upload({ fields, conditions: conditions(0, 100_000), file: Buffer.alloc(100_001) }),
    'EntityTooLarge',
  );
  await rejectsS3(
    upload({ fields, conditions: conditions(11, 20), file: Buffer.alloc(10) }),
    'EntityTooSmall',
  );
});

test('signature and policy document errors', async () => {
  await rejectsS3(upload({ signature: '0'.repeat(64) }), 'SignatureDoesNotMatch');
  const policy = Buffer.from(JSON.stringify({ expiration: '2026-11-23T00:00:00Z', conditions: [] })).toString(
    'base64',
  );
  await rejectsS3(upload({ policy, signature: signPolicy(policy, 'wrong-secret') }), 'SignatureDoesNotMatch');
  await rejectsS3(upload({ policy: 'bm90IGpzb24=' }), 'InvalidPolicyDocument');
  await rejectsS3(upload({ policy: { conditions: [] } }), 'InvalidPolicyDocument');
  await rejectsS3(
    upload({ policy: { expiration: '2026-11-23T00:00:00Z', conditions: [['between', '$key', 1]] } }),
    'InvalidPolicyDocument',
  );
  await rejectsS3(upload({ omitSignatureFields: true }), 'AccessDenied');
  // Anonymous forms only where the caller allows them.
  const anon = await upload(
    { omitSignatureFields: true, fields: [['key', 'a/${filename}']] },
    { ...opts, allowAnonymous: true },
  );
  assert.equal(anon.toString(), 'hello');
  await rejectsS3(
    upload({
      fields: [
        ['key', 'user/eric/x'],
        ['AWSAccessKeyId', 'AK'],
        ['signature', 'x'],
      ],
    }),
    'InvalidRequest',
  );
});

test('malformed forms are refused', async () => {
  const send = (raw: string, ct = 'multipart/form-data; boundary=B') =>
    parsePostObject(Readable.from([Buffer.from(raw)]), ct, opts);
  await rejectsS3(
    send('--B\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n--B--\r\n'),
    'InvalidArgument',
    /file/,
  );
  await rejectsS3(
    send('--B\r\nContent-Disposition: form-data; name="file"\r\n\r\nxx'),
    'InvalidArgument',
    /key/,
  );
  await rejectsS3(send('--B\r\nContent-Disposition: form-data; name="key"\r\n\r\nk'), 'MalformedPOSTRequest');
  await rejectsS3(send('--B\r\nX: y\r\n\r\nk\r\n--B--'), 'MalformedPOSTRequest');
  await rejectsS3(send('--B\r\n', 'application/json'), 'PreconditionFailed');
  await rejectsS3(send('--B\r\n', 'multipart/form-data'), 'MalformedPOSTRequest');
  const big = `--B\r\nContent-Disposition: form-data; name="key"\r\n\r\n${'k'.repeat(70_000)}\r\n--B--\r\n`;
  await rejectsS3(send(big), 'MaxPostPreDataLengthExceeded');
  // The file part must end with the delimiter: a truncated body fails the stream.
  const { contentType, body } = await encodeForm({});
  const raw = await collect(body);
  const cut = raw.subarray(0, raw.indexOf('hello') + 3);
  const up = await parsePostObject(Readable.from([cut]), contentType, opts);
  await rejectsS3(collect(up.fileStream), 'MalformedPOSTRequest');
});
