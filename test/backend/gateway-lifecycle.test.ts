// Lifecycle through a gateway (a coffre node as the backend): rules are kept sealed in the bucket's record and
// read back as set; `coffre lifecycle run --now` on a gateway expires current versions by prefix, tags and
// plaintext size, removes non-current versions and lone delete markers of a versioned bucket, aborts old
// uploads (in the backend too), and leaves a never-versioned bucket's older backend versions alone. Two
// gateways whose workers run every few hundred milliseconds apply the rules once (one delete marker per key),
// one at a time under the lease in the backend; an operator's run on a gateway while another holds it is
// refused. Malformed, huge and unsigned requests are refused, and a lease record overwritten in the backend
// (garbage, a huge blob, a sealed record of the wrong shape) stops nothing for good.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketLifecycleCommand,
  DeleteObjectCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  S3Client,
  S3ServiceException,
  type LifecycleRule,
} from '@aws-sdk/client-s3';
import { signer } from '../api/s3/sigv4-client.js';
import { rejects } from '../helpers/s3.js';
import { runCoffre, startServer, type TestServer } from '../helpers/server.js';
import { BackendLease } from '../../src/backend/lease.js';
import { checkLease } from './lease-helpers.js';
import { SharedRecords } from '../../src/backend/records.js';
import type { LifecycleReport } from '../../src/model/lifecycle.js';
import {
  backendTable,
  bodyOf,
  startBackend,
  startGateway,
  until,
  type Backend,
  type Gateway,
} from './gateway-helpers.js';

const DAY = 24 * 3600 * 1000;
const rpcSecretHex = randomBytes(32).toString('hex');
const rpcSecret = `rpc_secret = "${rpcSecretHex}"`;
// The pair of gateways works under its own prefix: its own keys, buckets, keyring and lease.
const PAIR = 'pair/';
const PAIR_ENV = { COFFRE_LIFECYCLE_INTERVAL_MS: '150', COFFRE_LIFECYCLE_LEASE_MS: '1500' };

let backend: Backend;
let gateway: Gateway;
let s3: S3Client;
let pairA: Gateway;
let pairB: TestServer;

before(async () => {
  backend = await startBackend();
  gateway = await startGateway(backend.target, { server: { secretConfig: rpcSecret } });
  s3 = gateway.client;
  pairA = await startGateway(backend.target, {
    prefix: PAIR,
    server: { secretConfig: rpcSecret, env: PAIR_ENV },
  });
  pairB = await startServer({
    secretConfig: rpcSecret,
    env: PAIR_ENV,
    extraConfig: `${backendTable(backend.target, PAIR)}\n[sse_s3]\nunlock_key_file = "${pairA.operator.privateFile}"\n`,
    accessKey: { id: pairA.server.accessKeyId, secret: pairA.server.secretAccessKey },
  });
});

after(async () => {
  await pairB?.stop();
  pairB?.cleanup();
  await pairA?.stop();
  await gateway?.stop();
  backend?.client.destroy();
  await backend?.server.stop();
  backend?.server.cleanup();
});

/** `coffre lifecycle run --now <days from now>` against the gateway, its JSON report. */
async function runAsOf(daysFromNow: number, server = gateway.server): Promise<LifecycleReport> {
  const now = new Date(Date.now() + daysFromNow * DAY).toISOString();
  const r = await runCoffre(['lifecycle', 'run', '--now', now, '--json', '--config', server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as LifecycleReport;
}

async function setRules(Bucket: string, Rules: LifecycleRule[], client = s3): Promise<void> {
  await client.send(
    new PutBucketLifecycleConfigurationCommand({ Bucket, LifecycleConfiguration: { Rules } }),
  );
}

async function keys(Bucket: string): Promise<string[]> {
  return ((await s3.send(new ListObjectsV2Command({ Bucket }))).Contents ?? []).map((o) => o.Key!);
}

const mine = (report: LifecycleReport, bucket: string) => report.actions.filter((a) => a.bucket === bucket);

/** A signed request to the gateway's S3 API with a body of our own (not one the SDK would send). */
async function signedPut(server: TestServer, path: string, query: Record<string, string>, body: Buffer) {
  const headers = {
    host: `127.0.0.1:${server.s3Port}`,
    'content-type': 'application/xml',
    'content-length': String(body.length),
    'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'),
  };
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign(
    { method: 'PUT', protocol: 'http:', hostname: '127.0.0.1', port: server.s3Port, path, query, headers },
    { signingDate: new Date() },
  );
  const qs = new URLSearchParams(query).toString();
  const res = await fetch(`${server.endpoint}${path}?${qs}`, {
    method: 'PUT',
    headers: signed.headers,
    body,
  });
  return { status: res.status, text: await res.text() };
}

test('lifecycle rules are set, read back and deleted through a gateway, and kept sealed in the backend', async () => {
  const B = 'rules';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await rejects(
    () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B })),
    'NoSuchLifecycleConfiguration',
    404,
  );
  await setRules(B, [
    { ID: 'tmp-files-rule', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 7 } },
    {
      ID: 'uploads',
      Status: 'Enabled',
      Filter: {},
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 },
    },
  ]);
  const got = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }))).Rules ?? [];
  assert.deepEqual(
    got.map((r) => [r.ID, r.Filter?.Prefix, r.Expiration?.Days]),
    [
      ['tmp-files-rule', 'tmp/', 7],
      ['uploads', '', undefined],
    ],
  );
  // The bucket's record in the backend holds the rules sealed: neither their ids nor their prefixes show.
  const record = await backend.client.send(
    new GetObjectCommand({ Bucket: backend.target.bucket, Key: `coffre/.coffre/buckets/${B}` }),
  );
  const sealed = (await bodyOf(record)).toString('latin1');
  assert.ok(
    !sealed.includes('tmp-files-rule') && !sealed.includes('tmp/'),
    'rules are sealed in the backend',
  );
  // Refused rules change nothing, as on coffre's own store.
  await rejects(
    () => setRules(B, [{ ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Days: 0 } }]),
    'InvalidArgument',
    400,
  );
  assert.equal((await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }))).Rules?.length, 2);
  await s3.send(new DeleteBucketLifecycleCommand({ Bucket: B }));
  await rejects(
    () => s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B })),
    'NoSuchLifecycleConfiguration',
    404,
  );
});

test('malformed, huge and unsigned lifecycle requests are refused, and the gateway serves on', async () => {
  const B = 'attacked';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [{ ID: 'keep', Status: 'Enabled', Filter: {}, Expiration: { Days: 30 } }]);
  const server = gateway.server;
  const malformed = await signedPut(server, `/${B}`, { lifecycle: '' }, Buffer.from('<Lifecycle<Rule>'));
  assert.equal(malformed.status, 400, malformed.text);
  assert.match(malformed.text, /<Code>MalformedXML<\/Code>/);
  const rule =
    '<Rule><ID>r</ID><Filter></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>';
  const tooMany = `<LifecycleConfiguration>${rule.repeat(1001)}</LifecycleConfiguration>`;
  const many = await signedPut(server, `/${B}`, { lifecycle: '' }, Buffer.from(tooMany));
  assert.equal(many.status, 400, many.text);
  const huge = Buffer.concat([Buffer.from('<LifecycleConfiguration>'), Buffer.alloc(2 * 1024 * 1024, 0x20)]);
  const big = await signedPut(server, `/${B}`, { lifecycle: '' }, huge);
  assert.equal(big.status, 400, big.text);
  assert.match(big.text, /<Code>MaxMessageLengthExceeded<\/Code>/);
  const unsigned = await fetch(`${server.endpoint}/${B}?lifecycle`, {
    method: 'PUT',
    body: `<LifecycleConfiguration>${rule}</LifecycleConfiguration>`,
  });
  assert.equal(unsigned.status, 403);
  const unsignedRead = await fetch(`${server.endpoint}/${B}?lifecycle`);
  assert.equal(unsignedRead.status, 403);
  const unsignedDelete = await fetch(`${server.endpoint}/${B}?lifecycle`, { method: 'DELETE' });
  assert.equal(unsignedDelete.status, 403);
  const wrongKey = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: 'not-the-secret' },
  });
  await rejects(
    () => setRules(B, [{ ID: 'x', Status: 'Enabled', Filter: {}, Expiration: { Days: 1 } }], wrongKey),
    'SignatureDoesNotMatch',
    403,
  );
  wrongKey.destroy();
  // Nothing of it changed the rules, and the gateway still answers.
  const rules = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }))).Rules ?? [];
  assert.deepEqual(
    rules.map((r) => r.ID),
    ['keep'],
  );
  await s3.send(new HeadBucketCommand({ Bucket: B }));
  await s3.send(new DeleteBucketLifecycleCommand({ Bucket: B }));
});

test('versioned: expiring makes one delete marker, non-current versions and lone markers go in their time', async () => {
  const B = 'aging-versions';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await s3.send(
    new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  await setRules(B, [
    {
      ID: 'history',
      Status: 'Enabled',
      Filter: { Prefix: 'k' },
      NoncurrentVersionExpiration: { NoncurrentDays: 1, NewerNoncurrentVersions: 1 },
    },
    { ID: 'markers', Status: 'Enabled', Filter: {}, Expiration: { ExpiredObjectDeleteMarker: true } },
    { ID: 'expire-old', Status: 'Enabled', Filter: { Prefix: 'old/' }, Expiration: { Days: 10 } },
  ]);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++)
    ids.push((await s3.send(new PutObjectCommand({ Bucket: B, Key: 'k', Body: `v${i}` }))).VersionId!);
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'gone', Body: 'x' }));
  const goneMarker = (await s3.send(new DeleteObjectCommand({ Bucket: B, Key: 'gone' }))).VersionId!;
  const oldVersion = (await s3.send(new PutObjectCommand({ Bucket: B, Key: 'old/doc', Body: 'doc' })))
    .VersionId!;

  const early = await runAsOf(0);
  assert.deepEqual(mine(early, B), []);
  const report = await runAsOf(5);
  // k: current v3 and the newest non-current v2 stay; v1 and v0 go, by the backend's version ids. gone: its
  // one version is not a k, so it stays, and so does its marker. old/doc is not 10 days old yet.
  assert.deepEqual(
    mine(report, B).map((a) => [a.key, a.versionId, a.action]),
    [
      ['k', ids[1], 'noncurrent-removed'],
      ['k', ids[0], 'noncurrent-removed'],
    ],
  );
  const left = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'k' }));
  assert.deepEqual(
    (left.Versions ?? []).map((v) => v.VersionId),
    [ids[3], ids[2]],
  );
  // The removed versions are gone from the backend too.
  const direct = await backend.client.send(
    new ListObjectVersionsCommand({ Bucket: backend.target.bucket, Prefix: `coffre/${B}/k` }),
  );
  assert.deepEqual(
    (direct.Versions ?? []).map((v) => v.VersionId),
    [ids[3], ids[2]],
  );

  // Expiring a current version in a versioned bucket makes a delete marker; a run later makes no second.
  const expiring = await runAsOf(11);
  const expired = mine(expiring, B).filter((a) => a.action === 'expired');
  assert.deepEqual(
    expired.map((a) => a.key),
    ['old/doc'],
  );
  assert.ok(expired[0]!.versionId && expired[0]!.versionId !== oldVersion, 'the marker’s own version id');
  await runAsOf(12);
  const old = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'old/' }));
  assert.equal(old.DeleteMarkers?.length, 1);
  assert.deepEqual(
    old.Versions?.map((v) => v.VersionId),
    [oldVersion],
  );

  // Once a key's last version is gone, the marker left alone goes too.
  await setRules(B, [
    { ID: 'all-history', Status: 'Enabled', Filter: {}, NoncurrentVersionExpiration: { NoncurrentDays: 1 } },
    { ID: 'markers', Status: 'Enabled', Filter: {}, Expiration: { ExpiredObjectDeleteMarker: true } },
  ]);
  const second = await runAsOf(5);
  assert.ok(
    mine(second, B).some(
      (a) => a.key === 'gone' && a.action === 'delete-marker-removed' && a.versionId === goneMarker,
    ),
    JSON.stringify(mine(second, B)),
  );
  const after = await s3.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: 'gone' }));
  assert.equal((after.Versions ?? []).length + (after.DeleteMarkers ?? []).length, 0);
});

test('expiration by prefix, sealed tags and plaintext size; a never-versioned bucket’s backend history is left alone', async () => {
  // The backend bucket is versioned (the test above): this bucket's overwritten objects leave backend versions
  // that its clients never see, and that no rule of its may remove.
  const B = 'expiring';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [
    { ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 2 } },
    {
      ID: 'scratch',
      Status: 'Enabled',
      Filter: { Tag: { Key: 'class', Value: 'scratch' } },
      Expiration: { Days: 1 },
    },
    {
      ID: 'big',
      Status: 'Enabled',
      Filter: { And: { Prefix: 'size/', ObjectSizeGreaterThan: 100 } },
      Expiration: { Days: 1 },
    },
    { ID: 'history', Status: 'Enabled', Filter: {}, NoncurrentVersionExpiration: { NoncurrentDays: 1 } },
    { ID: 'off', Status: 'Disabled', Filter: {}, Expiration: { Days: 1 } },
  ]);
  const put = (Key: string, Body: string | Buffer, Tagging?: string) =>
    s3.send(new PutObjectCommand({ Bucket: B, Key, Body, Tagging }));
  await put('tmp/a', 'a');
  await put('keep/b', 'b');
  await put('keep/b', 'b, again');
  await put('tagged-scratch', 'scratch body', 'class=scratch');
  await put('tagged-keep', 'kept body', 'class=keep');
  // Sealed, 60 plaintext bytes are more than 100 in the backend: the rule must judge plaintext sizes.
  await put('size/small', randomBytes(60));
  await put('size/big', randomBytes(200));
  const today = await runAsOf(0);
  assert.deepEqual(mine(today, B), []);
  const later = await runAsOf(3);
  assert.deepEqual(
    mine(later, B)
      .map((a) => [a.key, a.action, a.rule])
      .sort(),
    [
      ['size/big', 'expired', 'big'],
      ['tagged-scratch', 'expired', 'scratch'],
      ['tmp/a', 'expired', 'tmp'],
    ],
  );
  assert.deepEqual(await keys(B), ['keep/b', 'size/small', 'tagged-keep']);
  const kept = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'keep/b' }));
  assert.equal((await bodyOf(kept)).toString(), 'b, again');
});

test('a tags record damaged in the backend keeps its object from tag rules, and the run goes on', async () => {
  const B = 'damaged-tags';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [
    {
      ID: 'scratch',
      Status: 'Enabled',
      Filter: { Tag: { Key: 'class', Value: 'scratch' } },
      Expiration: { Days: 1 },
    },
    { ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 1 } },
  ]);
  const tagRecords = async () => {
    const listed = await backend.client.send(
      new ListObjectsV2Command({ Bucket: backend.target.bucket, Prefix: 'coffre/.coffre/tags/' }),
    );
    return new Set((listed.Contents ?? []).map((o) => o.Key!));
  };
  const before = await tagRecords();
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'damaged', Body: 'x', Tagging: 'class=scratch' }));
  const made = [...(await tagRecords())].filter((k) => !before.has(k));
  assert.equal(made.length, 1, 'one tags record for the new object');
  await backend.client.send(
    new PutObjectCommand({ Bucket: backend.target.bucket, Key: made[0]!, Body: randomBytes(200) }),
  );
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'tmp/x', Body: 'x' }));
  // The gateway believes what it wrote for a few seconds: until it reads the damaged record.
  await until('the damaged tags record read', async () => {
    try {
      await s3.send(new GetObjectTaggingCommand({ Bucket: B, Key: 'damaged' }));
      return undefined;
    } catch (err) {
      return err instanceof S3ServiceException && err.$metadata.httpStatusCode === 500 ? true : undefined;
    }
  });
  const report = await runAsOf(3);
  assert.deepEqual(
    mine(report, B).map((a) => [a.key, a.rule]),
    [['tmp/x', 'tmp']],
  );
  assert.deepEqual(await keys(B), ['damaged']);
});

test('old multipart uploads are aborted through a gateway, in the backend too; recent ones are not', async () => {
  const B = 'stale-uploads';
  await s3.send(new CreateBucketCommand({ Bucket: B }));
  await setRules(B, [
    {
      ID: 'abort',
      Status: 'Enabled',
      Filter: { Prefix: 'up/' },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 3 },
    },
  ]);
  await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'up/one' }));
  await s3.send(new CreateMultipartUploadCommand({ Bucket: B, Key: 'elsewhere' }));
  assert.equal(mine(await runAsOf(1), B).length, 0);
  const report = await runAsOf(4);
  assert.deepEqual(
    mine(report, B).map((a) => [a.key, a.action]),
    [['up/one', 'upload-aborted']],
  );
  const left = await s3.send(new ListMultipartUploadsCommand({ Bucket: B }));
  assert.deepEqual(
    (left.Uploads ?? []).map((u) => u.Key),
    ['elsewhere'],
  );
  const direct = await backend.client.send(
    new ListMultipartUploadsCommand({ Bucket: backend.target.bucket, Prefix: `coffre/${B}/` }),
  );
  assert.deepEqual(
    (direct.Uploads ?? []).map((u) => u.Key),
    [`coffre/${B}/elsewhere`],
  );
});

test('lifecycle through a gateway never acts against object lock', async (t) => {
  const B = 'locked-lifecycle';
  try {
    await s3.send(new CreateBucketCommand({ Bucket: B, ObjectLockEnabledForBucket: true }));
  } catch (err) {
    if (err instanceof S3ServiceException && err.name === 'NotImplemented') {
      t.skip('object lock is not offered through a gateway yet (docs/gateway.md)');
      return;
    }
    throw err;
  }
  await s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: B,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } },
      },
    }),
  );
  const first = (await s3.send(new PutObjectCommand({ Bucket: B, Key: 'r', Body: 'first' }))).VersionId!;
  await s3.send(new PutObjectCommand({ Bucket: B, Key: 'r', Body: 'second' }));
  await setRules(B, [
    { ID: 'everything', Status: 'Enabled', Filter: {}, NoncurrentVersionExpiration: { NoncurrentDays: 1 } },
  ]);
  const report = await runAsOf(400);
  assert.deepEqual(mine(report, B), []);
  assert.ok(report.keptByObjectLock >= 1);
  const got = await s3.send(new GetObjectCommand({ Bucket: B, Key: 'r', VersionId: first }));
  assert.equal((await bodyOf(got)).toString(), 'first');
});

test('the admin API runs lifecycle on a gateway, and refuses what it must', async () => {
  const server = gateway.server;
  const call = (body: unknown, token = server.adminToken) =>
    fetch(`${server.adminEndpoint}/v1/lifecycle/run`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const ran = await call({});
  assert.equal(ran.status, 200);
  assert.ok(((await ran.json()) as LifecycleReport).buckets >= 1);
  assert.equal((await call({ now: 'next tuesday' })).status, 400);
  assert.equal((await call({}, 'not-the-token')).status, 403);
  const unauthenticated = await fetch(`${server.adminEndpoint}/v1/lifecycle/run`, {
    method: 'POST',
    body: '{}',
  });
  assert.equal(unauthenticated.status, 403);
});

// ---- two gateways, one backend, one lease

const adminRun = (server: TestServer) =>
  fetch(`${server.adminEndpoint}/v1/lifecycle/run`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: '{}',
  });

/** The pair's lease, as a third holder (the test) sees and takes it: same backend, prefix and rpc_secret. */
function pairRecords(): { records: SharedRecords; client: S3Client } {
  const client = backend.client;
  return {
    client,
    records: new SharedRecords(client, backend.target.bucket, PAIR, Buffer.from(rpcSecretHex, 'hex')),
  };
}

const KEYS = 60;
const EXPIRED: LifecycleRule = {
  ID: 'dated',
  Status: 'Enabled',
  Filter: { Prefix: 'e/' },
  Expiration: { Date: new Date('2020-01-01T00:00:00Z') },
};

/** Whether every key has a delete marker as its current version (the rule applied), and how many each has. */
async function markers(client: S3Client, Bucket: string): Promise<Map<string, number>> {
  const listed = await client.send(new ListObjectVersionsCommand({ Bucket, Prefix: 'e/' }));
  const counts = new Map<string, number>();
  for (const v of listed.Versions ?? []) counts.set(v.Key!, counts.get(v.Key!) ?? 0);
  for (const m of listed.DeleteMarkers ?? []) counts.set(m.Key!, (counts.get(m.Key!) ?? 0) + 1);
  return counts;
}

/** Runs `job` under `lease` as soon as it is free (another holder may have it now); its failure fails. */
async function holdWhenFree<T>(lease: BackendLease, job: () => Promise<T>) {
  const end = Date.now() + 60_000;
  for (;;) {
    const outcome = await lease.run(job);
    if (outcome.ran) return outcome;
    if (Date.now() > end) throw new Error(`the lease stayed held by ${outcome.holder ?? 'another'}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until no run holds the pair's lease and one finished after `since` (so none is half-way). */
async function quiet(records: SharedRecords, since: number): Promise<void> {
  await until('a finished lifecycle pass', async () => {
    const got = await records.readStateOrEtag(
      'leases',
      'lifecycle',
      (v): v is { holder: string; finishedAt?: number } => typeof v === 'object' && v !== null,
    );
    const v = got.value;
    return v && v.holder === '' && (v.finishedAt ?? 0) > since ? true : undefined;
  });
}

test('two gateways apply the rules once, one at a time under the lease; an operator’s run waits its turn', async () => {
  const B = 'pair-bucket';
  const a = pairA.client;
  const b = pairB.client();
  const { records } = pairRecords();
  const third = new BackendLease(records, { name: 'lifecycle', holder: 'the-test-itself', ttlMs: 60_000 });
  // While the test holds the lease, neither gateway applies anything, and an operator's run is refused.
  // The gateways' own passes (over buckets with no rules yet) hold the lease now and then: the test takes it
  // between two of them.
  const held = await holdWhenFree(third, async () => {
    await a.send(new CreateBucketCommand({ Bucket: B }));
    await a.send(
      new PutBucketVersioningCommand({ Bucket: B, VersioningConfiguration: { Status: 'Enabled' } }),
    );
    for (let i = 0; i < KEYS; i++)
      await (i % 2 ? a : b).send(new PutObjectCommand({ Bucket: B, Key: `e/${i}`, Body: `object ${i}` }));
    await setRules(B, [EXPIRED], b);
    // Both gateways know the rules (each believes a bucket's record for a few seconds): once the lease is
    // free, both workers start a pass over the same keys within one interval of each other.
    for (const client of [a, b])
      await until('the rules known to both gateways', async () => {
        const got = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: B }));
        return got.Rules?.length === 1 ? true : undefined;
      });
    for (const server of [pairA.server, pairB]) {
      const refused = await adminRun(server);
      assert.equal(refused.status, 409);
      assert.match(await refused.text(), /in progress on gateway the-test-itself/);
    }
    const cli = await runCoffre(['lifecycle', 'run', '--config', pairB.configPath]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /lifecycle run is in progress/);
    assert.doesNotMatch(cli.stderr, /\n\s+at /);
    return true;
  });
  assert.deepEqual(held, { ran: true, value: true });
  const released = Date.now();
  // Both gateways' workers now run every 150 ms: each key gets one delete marker, never two.
  await until('every key expired', async () => {
    const counts = await markers(a, B);
    return counts.size === KEYS && [...counts.values()].every((n) => n >= 1) ? true : undefined;
  });
  await quiet(records, released);
  const counts = await markers(b, B);
  assert.deepEqual([...new Set(counts.values())], [1], JSON.stringify([...counts]));
  b.destroy();
});

test('a lease record overwritten in the backend stops neither gateway, nor lifecycle for good', async () => {
  const B = 'pair-bucket';
  const a = pairA.client;
  const { records, client } = pairRecords();
  const leaseKey = `${PAIR}.coffre/leases/lifecycle`;
  const tamperings: [string, () => Promise<unknown>][] = [
    [
      'garbage bytes',
      () =>
        client.send(
          new PutObjectCommand({ Bucket: backend.target.bucket, Key: leaseKey, Body: 'not a lease' }),
        ),
    ],
    [
      'a huge blob',
      () =>
        client.send(
          new PutObjectCommand({
            Bucket: backend.target.bucket,
            Key: leaseKey,
            Body: randomBytes(3 * 1024 * 1024),
          }),
        ),
    ],
    [
      'a sealed record of the wrong shape',
      () => records.writeState('leases', 'lifecycle', { v: 1, holder: 7, expiresAt: 'never' }),
    ],
  ];
  for (const [i, [what, tamper]] of tamperings.entries()) {
    await tamper();
    const key = `e/after-${i}`;
    await a.send(new PutObjectCommand({ Bucket: B, Key: key, Body: what }));
    // The unreadable lease is taken over once a gateway has seen it unchanged for its TTL (1.5 s here).
    await until(`lifecycle applied again after ${what}`, async () => {
      const listed = await a.send(new ListObjectVersionsCommand({ Bucket: B, Prefix: key }));
      return (listed.DeleteMarkers ?? []).length === 1 ? true : undefined;
    });
    assert.equal(pairA.server.process.exitCode, null, `the first gateway runs on after ${what}`);
    assert.equal(pairB.process.exitCode, null, `the second gateway runs on after ${what}`);
  }
  await quiet(records, 0);
  const b = pairB.client();
  await b.send(new HeadBucketCommand({ Bucket: B }));
  b.destroy();
});

test('the lease: two holders at the same moment, one runs; a renewal refused aborts the job; an expired one is taken', async () => {
  const { records, client } = pairRecords();
  await checkLease(records, (name) =>
    client.send(
      new PutObjectCommand({
        Bucket: backend.target.bucket,
        Key: `${PAIR}.coffre/leases/${name}`,
        Body: 'x',
      }),
    ),
  );
});
