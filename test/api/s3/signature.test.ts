import assert from 'node:assert/strict';
import { test } from 'node:test';
import { S3Error } from '../../../src/util/s3-error.js';
import {
  authenticateRequest,
  deriveSigningKey,
  hasCredentials,
  uriEncode,
  type AuthOptions,
  type AuthRequest,
} from '../../../src/api/s3/signature.js';
import { ACCESS_KEY, REGION, SECRET_KEY, presign, signHeader } from './sigv4-client.js';

const NOW = new Date('2026-11-22T12:00:00Z');

function options(extra: Partial<AuthOptions> = {}): AuthOptions {
  return {
    region: REGION,
    now: NOW,
    lookupSecret: async (id) => (id === ACCESS_KEY ? SECRET_KEY : undefined),
    ...extra,
  };
}

async function rejects(
  p: Promise<unknown>,
  code: string,
  status: number,
  message?: RegExp,
): Promise<S3Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof S3Error, `expected S3Error, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

test('header-signed GET from the AWS SDK signer is accepted', async () => {
  const req = await signHeader(
    { path: '/bucket/photos/cat.jpg', headers: { range: 'bytes=0-9' } },
    { date: NOW },
  );
  const ctx = await authenticateRequest(req, options());
  assert.equal(ctx.accessKeyId, ACCESS_KEY);
  assert.equal(ctx.payloadMode, 'unsigned');
  assert.equal(ctx.presigned, false);
  assert.equal(ctx.scope, `20261122/${REGION}/s3/aws4_request`);
  assert.equal(ctx.amzDate, '20261122T120000Z');
  assert.equal(ctx.signingKey.length, 32);
  assert.match(ctx.seedSignature, /^[0-9a-f]{64}$/);
});

test('signed payload hash is returned as expectedSha256', async () => {
  const hash = 'a'.repeat(64);
  const req = await signHeader(
    { method: 'PUT', path: '/b/k' },
    { date: NOW, payloadHash: hash.toUpperCase() },
  );
  const ctx = await authenticateRequest(req, options());
  assert.equal(ctx.payloadMode, 'signed');
  assert.equal(ctx.expectedSha256, hash);
});

test('streaming payload modes are recognised', async () => {
  const modes = {
    'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': 'streaming-signed',
    'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': 'streaming-signed-trailer',
    'STREAMING-UNSIGNED-PAYLOAD-TRAILER': 'streaming-unsigned-trailer',
  } as const;
  for (const [value, mode] of Object.entries(modes)) {
    const req = await signHeader({ method: 'PUT', path: '/b/k' }, { date: NOW, payloadHash: value });
    assert.equal((await authenticateRequest(req, options())).payloadMode, mode);
  }
  const bad = await signHeader({ method: 'PUT', path: '/b/k' }, { date: NOW, payloadHash: 'nonsense' });
  await rejects(authenticateRequest(bad, options()), 'InvalidArgument', 400);
});

test('query parameters are canonicalised: sorted, RFC 3986 encoded, valueless ones kept', async () => {
  const req = await signHeader(
    { path: '/bucket', query: { 'list-type': '2', prefix: 'a b/ü+*', delimiter: '/', uploads: '' } },
    { date: NOW },
  );
  // A client may omit '=' for valueless sub-resources.
  req.query = req.query.replace('uploads=', 'uploads');
  await authenticateRequest(req, options());
});

test("an unescaped '+' in the query verifies whether the client meant a space or a plus", async () => {
  const asSpace = await signHeader({ path: '/bucket', query: { prefix: 'a b' } }, { date: NOW });
  await authenticateRequest({ ...asSpace, query: 'prefix=a+b' }, options());
  const asPlus = await signHeader({ path: '/bucket', query: { prefix: 'a+b' } }, { date: NOW });
  await authenticateRequest({ ...asPlus, query: 'prefix=a+b' }, options());
  await rejects(
    authenticateRequest({ ...asPlus, query: 'prefix=a%20c' }, options()),
    'SignatureDoesNotMatch',
    403,
  );
});

test('keys with reserved characters verify whether or not the client escaped them', async () => {
  const path = '/bucket/' + uriEncode("dir/a b!'()*~é.txt", true);
  const req = await signHeader({ method: 'PUT', path }, { date: NOW });
  await authenticateRequest(req, options());
  // Same signature, but the client left sub-delimiters unescaped on the wire.
  const loose = { ...req, path: "/bucket/dir/a%20b!'()*~%C3%A9.txt" };
  await authenticateRequest(loose, options());
});

test('any tampering breaks the signature', async () => {
  const req = await signHeader(
    { path: '/bucket/key', query: { versionId: '1' }, headers: { range: 'bytes=0-9' } },
    { date: NOW },
  );
  await authenticateRequest(req, options());
  const variants: AuthRequest[] = [
    { ...req, method: 'DELETE' },
    { ...req, path: '/bucket/other' },
    { ...req, query: 'versionId=2' },
    { ...req, headers: { ...req.headers, range: 'bytes=0-99' } },
    {
      ...req,
      headers: {
        ...req.headers,
        'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      },
    },
  ];
  for (const v of variants) await rejects(authenticateRequest(v, options()), 'SignatureDoesNotMatch', 403);
  const wrongSecret = await signHeader({ path: '/bucket/key' }, { date: NOW, secret: 'not-the-secret' });
  await rejects(authenticateRequest(wrongSecret, options()), 'SignatureDoesNotMatch', 403);
});

test('header values are trimmed and inner whitespace collapsed', async () => {
  const req = await signHeader(
    { method: 'PUT', path: '/b/k', headers: { 'x-amz-meta-note': 'a  b   c' } },
    { date: NOW },
  );
  req.headers['x-amz-meta-note'] = '  a b  c ';
  await authenticateRequest(req, options());
});

test('refusals carry the S3 error codes', async () => {
  const good = await signHeader({ path: '/bucket/key' }, { date: NOW });
  await rejects(
    authenticateRequest({ ...good, headers: { host: 'localhost' } }, options()),
    'AccessDenied',
    403,
  );
  assert.equal(hasCredentials({ ...good, headers: {} }), false);
  assert.equal(hasCredentials(good), true);

  const unknown = await signHeader({ path: '/bucket/key' }, { date: NOW, accessKey: 'AKIDUNKNOWN' });
  await rejects(authenticateRequest(unknown, options()), 'InvalidAccessKeyId', 403);

  const old = await signHeader({ path: '/bucket/key' }, { date: new Date(NOW.getTime() - 16 * 60 * 1000) });
  await rejects(authenticateRequest(old, options()), 'RequestTimeTooSkewed', 403);
  const recent = await signHeader(
    { path: '/bucket/key' },
    { date: new Date(NOW.getTime() - 14 * 60 * 1000) },
  );
  await authenticateRequest(recent, options());

  const otherRegion = await signHeader({ path: '/bucket/key' }, { date: NOW, region: 'eu-west-3' });
  const err = await rejects(
    authenticateRequest(otherRegion, options()),
    'AuthorizationHeaderMalformed',
    400,
    /us-east-1/,
  );
  assert.equal(err.extra.Region, REGION);

  const v2 = { ...good, headers: { ...good.headers, authorization: `AWS ${ACCESS_KEY}:c2lnbmF0dXJl` } };
  await rejects(authenticateRequest(v2, options()), 'InvalidRequest', 400, /AWS4-HMAC-SHA256/);
  const v2query = {
    ...good,
    headers: { host: 'localhost' },
    query: `AWSAccessKeyId=${ACCESS_KEY}&Signature=x&Expires=1`,
  };
  await rejects(authenticateRequest(v2query, options()), 'InvalidRequest', 400, /AWS4-HMAC-SHA256/);

  const auth = String(good.headers.authorization);
  const malformed = [
    auth.replace(/Signature=[0-9a-f]+/, 'Signature=xyz'),
    auth.replace(/SignedHeaders=[^,]+,/, ''),
    auth.replace(/Credential=[^,]+/, 'Credential=AKID/2026/us-east-1/s3'),
    auth.replace('SignedHeaders=host;', 'SignedHeaders='),
    'AWS4-HMAC-SHA512 Credential=x',
  ];
  for (const a of malformed) {
    await rejects(
      authenticateRequest({ ...good, headers: { ...good.headers, authorization: a } }, options()),
      'AuthorizationHeaderMalformed',
      400,
    );
  }
  const token = { ...good, headers: { ...good.headers, 'x-amz-security-token': 'tok' } };
  await rejects(authenticateRequest(token, options()), 'InvalidToken', 400);
  const both = { ...good, query: 'X-Amz-Algorithm=AWS4-HMAC-SHA256' };
  await rejects(authenticateRequest(both, options()), 'InvalidArgument', 400);
  const noHash = { ...good, headers: { ...good.headers } };
  delete noHash.headers['x-amz-content-sha256'];
  await rejects(authenticateRequest(noHash, options()), 'InvalidRequest', 400);
});

test('the documented AWS example (GET with Range) verifies', async () => {
  const req: AuthRequest = {
    method: 'GET',
    path: '/test.txt',
    query: '',
    headers: {
      host: 'examplebucket.s3.amazonaws.com',
      range: 'bytes=0-9',
      'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      'x-amz-date': '20130524T000000Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    },
  };
  const ctx = await authenticateRequest(req, options({ now: new Date('2013-05-24T00:00:00Z') }));
  assert.equal(ctx.expectedSha256, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('the documented AWS presigned URL example verifies', async () => {
  const req: AuthRequest = {
    method: 'GET',
    path: '/test.txt',
    query:
      'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
    headers: { host: 'examplebucket.s3.amazonaws.com' },
  };
  const ctx = await authenticateRequest(req, options({ now: new Date('2013-05-24T10:00:00Z') }));
  assert.equal(ctx.presigned, true);
  assert.equal(ctx.payloadMode, 'unsigned');
  await rejects(
    authenticateRequest(req, options({ now: new Date('2013-05-25T00:00:01Z') })),
    'AccessDenied',
    403,
    /Request has expired/,
  );
});

test('presigned URLs from the AWS SDK signer', async () => {
  const req = await presign(
    { path: '/bucket/some%20key', query: { 'response-content-type': 'text/plain' } },
    { date: NOW, expiresIn: 600 },
  );
  const ctx = await authenticateRequest(req, options());
  assert.equal(ctx.presigned, true);
  assert.equal(ctx.accessKeyId, ACCESS_KEY);

  // Valid for its whole lifetime, expired after.
  await authenticateRequest(req, options({ now: new Date(NOW.getTime() + 599_000) }));
  await rejects(
    authenticateRequest(req, options({ now: new Date(NOW.getTime() + 601_000) })),
    'AccessDenied',
    403,
    /expired/,
  );
  // Neither skew nor clock limits apply to an old URL that is still within its validity.
  const week = await presign({ path: '/bucket/k' }, { date: NOW, expiresIn: 7 * 24 * 3600 });
  await authenticateRequest(week, options({ now: new Date(NOW.getTime() + 6 * 24 * 3600 * 1000) }));

  await rejects(
    authenticateRequest({ ...req, query: req.query.replace('text%2Fplain', 'text%2Fhtml') }, options()),
    'SignatureDoesNotMatch',
    403,
  );
  await rejects(authenticateRequest({ ...req, method: 'PUT' }, options()), 'SignatureDoesNotMatch', 403);
  await rejects(
    authenticateRequest(
      { ...req, query: req.query.replace('X-Amz-Expires=600', 'X-Amz-Expires=604801') },
      options(),
    ),
    'AuthorizationQueryParametersError',
    400,
  );
  await rejects(
    authenticateRequest({ ...req, query: req.query + '&X-Amz-Security-Token=abc' }, options()),
    'InvalidToken',
    400,
  );
  await rejects(
    authenticateRequest({ ...req, query: req.query.replace(/&?X-Amz-Date=[^&]+/, '') }, options()),
    'AuthorizationQueryParametersError',
    400,
  );
  const otherRegion = await presign({ path: '/bucket/k' }, { date: NOW, region: 'eu-west-3' });
  await rejects(
    authenticateRequest(otherRegion, options()),
    'AuthorizationQueryParametersError',
    400,
    /us-east-1/,
  );
});

test('signing keys are cached yet handed out as private copies', () => {
  const a = deriveSigningKey(SECRET_KEY, '20130524', 'us-east-1');
  const b = deriveSigningKey(SECRET_KEY, '20130524', 'us-east-1');
  assert.deepEqual(a, b);
  a.fill(0);
  assert.deepEqual(deriveSigningKey(SECRET_KEY, '20130524', 'us-east-1'), b);
  assert.notDeepEqual(deriveSigningKey(SECRET_KEY, '20130525', 'us-east-1'), b);
});

test('a client that signed the Host without its port is accepted; another host is not', async () => {
  const req = await signHeader({ path: '/bucket/key', headers: { host: 'localhost' } }, { date: NOW });
  // What git-annex's S3 library sends: the port in Host, but a signature over the port-less name.
  const sent = { ...req, headers: { ...req.headers, host: 'localhost:3900' } };
  const ctx = await authenticateRequest(sent, options());
  assert.equal(ctx.accessKeyId, ACCESS_KEY);
  const elsewhere = { ...req, headers: { ...req.headers, host: 'otherhost:3900' } };
  await rejects(authenticateRequest(elsewhere, options()), 'SignatureDoesNotMatch', 403);
});
