// The bucket policy language (api/s3/policy.ts) on its own: what PutBucketPolicy refuses, and with which of
// S3's messages; how statements, wildcards and condition operators decide a request; what counts as public.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  evaluatePolicy,
  globMatch,
  isPublic,
  parsePolicy,
  type PolicyRequest,
} from '../../../src/api/s3/policy.js';
import { S3Error } from '../../../src/util/s3-error.js';

const B = 'photos';

function policy(...statements: unknown[]): string {
  return JSON.stringify({ Version: '2012-10-17', Statement: statements });
}

function refused(text: string, message: string | RegExp): void {
  assert.throws(
    () => parsePolicy(text, B),
    (e: unknown) =>
      e instanceof S3Error &&
      e.code === 'MalformedPolicy' &&
      e.status === 400 &&
      (typeof message === 'string' ? e.message === message : message.test(e.message)),
    text.slice(0, 200),
  );
}

const allowGet = { Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: `arn:aws:s3:::${B}/*` };

function request(over: Partial<PolicyRequest> & { values?: Record<string, string> } = {}): PolicyRequest {
  const values = over.values ?? {};
  return {
    keyId: over.keyId,
    action: over.action ?? 's3:GetObject',
    resource: over.resource ?? `arn:aws:s3:::${B}/a.jpg`,
    conditionValues: (k) => (values[k] === undefined ? undefined : [values[k]]),
  };
}

async function verdict(statements: unknown[], req: PolicyRequest) {
  return evaluatePolicy(parsePolicy(policy(...statements), B), req);
}

test('PutBucketPolicy refuses what S3 refuses, with its messages', () => {
  refused('', "Policies must be valid JSON and the first byte must be '{'");
  refused('[]', "Policies must be valid JSON and the first byte must be '{'");
  refused('{"Version": ', 'This policy contains invalid Json');
  refused('{"Version":"2012-10-17"}', 'Missing required field Statement');
  refused(policy({ ...allowGet, Effect: 'hello' }), 'Invalid effect: hello');
  refused(policy({ ...allowGet, Action: 'invalid_action' }), 'Policy has invalid action');
  refused(policy({ ...allowGet, Action: 's3:GetObjekt' }), 'Policy has invalid action');
  refused(policy({ ...allowGet, Action: 'iam:*' }), 'Policy has invalid action');
  refused(policy({ ...allowGet, Resource: '*' }), 'Policy has invalid resource');
  refused(policy({ ...allowGet, Resource: 'arn:aws:s3:::other/*' }), 'Policy has invalid resource');
  refused(
    policy({ ...allowGet, Resource: `arn:aws:s3:::${B}` }),
    'Action does not apply to any resource(s) in statement',
  );
  refused(
    policy({ ...allowGet, Principal: { Service: 'ec2.amazonaws.com' } }),
    'Invalid principal in policy',
  );
  refused(policy({ ...allowGet, Principal: { AWS: 'not a key!' } }), 'Invalid principal in policy');
  refused(
    policy({ Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::${B}/*` }),
    'Missing required field Principal',
  );
  refused(
    policy({ ...allowGet, Condition: { StringEq: { 's3:prefix': 'a' } } }),
    'Invalid Condition type : StringEq',
  );
  refused(
    policy({ ...allowGet, Condition: { StringEquals: { 's3:no-such-key': 'a' } } }),
    'Policy has an invalid condition key',
  );
  refused(
    policy({ ...allowGet, Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/33' } } }),
    /Invalid IpAddress/,
  );
  refused(policy({ ...allowGet, Sid: 'a' }, { ...allowGet, Sid: 'a' }), /must be unique/);
  refused(policy({ ...allowGet, Effcet: 'Allow' }), 'Unknown field Effcet');
  refused(JSON.stringify({ Version: '2000-01-01', Statement: allowGet }), /Invalid policy version/);
  // Oversized, and nested far deeper than the grammar allows: refused before JSON.parse walks it.
  refused(policy({ ...allowGet, Sid: 'x'.repeat(21 * 1024) }), /no larger than 20480 bytes/);
  refused(`{"Statement":${'['.repeat(5000)}${']'.repeat(5000)}}`, 'This policy contains invalid Json');
  // A `__proto__` field is just an unknown field, never a prototype.
  refused('{"Statement":{"__proto__":{"Effect":"Allow"}}}', 'Unknown field __proto__');
});

test('accepted documents: one statement or a list, Version absent, JSON booleans and numbers as values', () => {
  const p = parsePolicy(JSON.stringify({ Statement: allowGet }), B);
  assert.equal(p.version, '2008-10-17');
  assert.equal(p.statements.length, 1);
  parsePolicy(policy({ ...allowGet, Condition: { Bool: { 'aws:SecureTransport': false } } }), B);
  parsePolicy(policy({ ...allowGet, Condition: { NumericLessThan: { 's3:max-keys': 10 } } }), B);
  parsePolicy(
    policy({ ...allowGet, Action: ['S3:getobject', 's3:Get*'], Resource: [`arn:aws:s3:::${B}/*`] }),
    B,
  );
});

test('matching: principals, actions case-insensitively, resources case-sensitively, Not* forms', async () => {
  assert.equal(await verdict([allowGet], request()), 'allow');
  assert.equal(await verdict([allowGet], request({ action: 's3:PutObject' })), 'none');
  assert.equal(await verdict([allowGet], request({ resource: `arn:aws:s3:::${B}` })), 'none');
  const onlyKey = { ...allowGet, Principal: { AWS: ['GKabc'] } };
  assert.equal(await verdict([onlyKey], request({ keyId: 'GKabc' })), 'allow');
  assert.equal(await verdict([onlyKey], request({ keyId: 'GKother' })), 'none');
  assert.equal(await verdict([onlyKey], request()), 'none'); // anonymous
  const publicDir = { ...allowGet, Resource: `arn:aws:s3:::${B}/Public/*` };
  assert.equal(await verdict([publicDir], request({ resource: `arn:aws:s3:::${B}/public/x` })), 'none');
  assert.equal(await verdict([publicDir], request({ resource: `arn:aws:s3:::${B}/Public/x` })), 'allow');
  const exceptDelete = {
    Effect: 'Deny',
    NotPrincipal: { AWS: 'GKadmin' },
    NotAction: 's3:Get*',
    Resource: `arn:aws:s3:::${B}/*`,
  };
  assert.equal(await verdict([allowGet, exceptDelete], request({ action: 's3:DeleteObject' })), 'deny');
  assert.equal(
    await verdict([allowGet, exceptDelete], request({ keyId: 'GKadmin', action: 's3:DeleteObject' })),
    'none',
  );
  assert.equal(await verdict([allowGet, exceptDelete], request()), 'allow');
});

test('an explicit Deny wins over any Allow, whatever the order', async () => {
  const deny = { ...allowGet, Effect: 'Deny' };
  assert.equal(await verdict([allowGet, deny], request()), 'deny');
  assert.equal(await verdict([deny, allowGet], request()), 'deny');
});

test("condition operators, absent keys, …IfExists, Null and the set operators follow IAM's rules", async () => {
  const sse = (Condition: unknown) => ({ ...allowGet, Action: 's3:PutObject', Condition });
  const put = (values: Record<string, string>) => request({ action: 's3:PutObject', values });
  const key = 's3:x-amz-server-side-encryption';
  // A negated test holds for a key the request lacks (the "refuse unencrypted uploads" recipe relies on it).
  assert.equal(await verdict([sse({ StringNotEquals: { [key]: 'AES256' } })], put({})), 'allow');
  assert.equal(
    await verdict([sse({ StringNotEquals: { [key]: 'AES256' } })], put({ [key]: 'AES256' })),
    'none',
  );
  assert.equal(await verdict([sse({ StringEquals: { [key]: 'AES256' } })], put({})), 'none');
  assert.equal(await verdict([sse({ StringEqualsIfExists: { [key]: 'AES256' } })], put({})), 'allow');
  assert.equal(
    await verdict([sse({ StringEqualsIfExists: { [key]: 'AES256' } })], put({ [key]: 'aws:kms' })),
    'none',
  );
  assert.equal(await verdict([sse({ Null: { [key]: 'true' } })], put({})), 'allow');
  assert.equal(await verdict([sse({ Null: { [key]: 'true' } })], put({ [key]: 'AES256' })), 'none');
  assert.equal(
    await verdict([sse({ StringEqualsIgnoreCase: { [key]: 'aes256' } })], put({ [key]: 'AES256' })),
    'allow',
  );
  // Several values of one key: any matches; several keys or operators: all must hold.
  const list = (values: Record<string, string>) =>
    request({ action: 's3:ListBucket', resource: `arn:aws:s3:::${B}`, values });
  const listing = (Condition: unknown) => ({
    ...allowGet,
    Action: 's3:ListBucket',
    Resource: `arn:aws:s3:::${B}`,
    Condition,
  });
  const homes = listing({ StringLike: { 's3:prefix': ['home/alice/*', 'shared/*'] } });
  assert.equal(await verdict([homes], list({ 's3:prefix': 'shared/x' })), 'allow');
  assert.equal(await verdict([homes], list({ 's3:prefix': 'home/bob/' })), 'none');
  assert.equal(await verdict([homes], list({})), 'none');
  const both = listing({ StringLike: { 's3:prefix': 'a*' }, StringEquals: { 's3:delimiter': '/' } });
  assert.equal(await verdict([both], list({ 's3:prefix': 'ab', 's3:delimiter': '/' })), 'allow');
  assert.equal(await verdict([both], list({ 's3:prefix': 'ab' })), 'none');
  const few = listing({ NumericLessThanEquals: { 's3:max-keys': '10' } });
  assert.equal(await verdict([few], list({ 's3:max-keys': '10' })), 'allow');
  assert.equal(await verdict([few], list({ 's3:max-keys': '11' })), 'none');
  // Addresses and ranges, IPv4 and IPv6.
  const from = (Condition: unknown) => ({ ...allowGet, Condition });
  const ip = (a: string) => request({ values: { 'aws:sourceip': a } });
  assert.equal(
    await verdict([from({ IpAddress: { 'aws:SourceIp': ['10.0.0.0/8', '2001:db8::/32'] } })], ip('10.1.2.3')),
    'allow',
  );
  assert.equal(
    await verdict(
      [from({ IpAddress: { 'aws:SourceIp': ['10.0.0.0/8', '2001:db8::/32'] } })],
      ip('2001:db8::1'),
    ),
    'allow',
  );
  assert.equal(
    await verdict([from({ IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } })], ip('192.0.2.1')),
    'none',
  );
  assert.equal(
    await verdict([from({ NotIpAddress: { 'aws:SourceIp': '10.0.0.0/8' } })], ip('192.0.2.1')),
    'allow',
  );
  assert.equal(
    await verdict(
      [from({ Bool: { 'aws:SecureTransport': 'false' } })],
      request({ values: { 'aws:securetransport': 'false' } }),
    ),
    'allow',
  );
  assert.equal(
    await verdict(
      [from({ DateLessThan: { 'aws:CurrentTime': '2100-01-01T00:00:00Z' } })],
      request({ values: { 'aws:currenttime': new Date().toISOString() } }),
    ),
    'allow',
  );
  // Set operators over a key the request lacks: ForAllValues holds, ForAnyValue does not.
  assert.equal(
    await verdict([from({ 'ForAllValues:StringEquals': { 's3:RequestObjectTagKeys': 'a' } })], request()),
    'allow',
  );
  assert.equal(
    await verdict([from({ 'ForAnyValue:StringEquals': { 's3:RequestObjectTagKeys': 'a' } })], request()),
    'none',
  );
});

test('wildcards: * and ? only, matched without regular expressions, in time bounded by the lengths', () => {
  assert.ok(globMatch('a*c', 'abbbc'));
  assert.ok(globMatch('a?c', 'abc'));
  assert.ok(!globMatch('a?c', 'ac'));
  assert.ok(globMatch('*', ''));
  assert.ok(!globMatch('a.c', 'abc')); // no regex meaning
  assert.ok(!globMatch('[ab]', 'a'));
  const started = process.hrtime.bigint();
  assert.ok(!globMatch('*a'.repeat(200) + 'b', 'a'.repeat(5000)));
  // Well under a second even on a busy machine: a sanity bound, not a benchmark.
  assert.ok(process.hrtime.bigint() - started < 5_000_000_000n);
});

test('public, as GetBucketPolicyStatus reports it: a grant to everyone not pinned to addresses or a caller', () => {
  assert.equal(isPublic(parsePolicy(policy(allowGet), B)), true);
  assert.equal(isPublic(parsePolicy(policy({ ...allowGet, Principal: { AWS: 'GKabc' } }), B)), false);
  assert.equal(isPublic(parsePolicy(policy({ ...allowGet, Effect: 'Deny' }), B)), false);
  const pinned = { ...allowGet, Condition: { IpAddress: { 'aws:SourceIp': '192.0.2.0/24' } } };
  assert.equal(isPublic(parsePolicy(policy(pinned), B)), false);
  const wide = { ...allowGet, Condition: { IpAddress: { 'aws:SourceIp': '0.0.0.0/1' } } };
  assert.equal(isPublic(parsePolicy(policy(wide), B)), true);
  const https = { ...allowGet, Condition: { Bool: { 'aws:SecureTransport': 'true' } } };
  assert.equal(isPublic(parsePolicy(policy(https), B)), true);
});
