// The admin API behind the console's versions and bucket settings: a key's versions listed newest first, one
// version downloaded or deleted as object lock allows (GOVERNANCE only with the bypass header, COMPLIANCE and
// legal holds never), versioning and lifecycle rules set as S3 sets them and read back by S3 clients; and the
// same requests tried as an attacker would: no token, a wrong one, a session without its CSRF token or from
// another origin, malformed version ids and documents.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateBucketCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketVersioningCommand,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
} from '@aws-sdk/client-s3';
import { startServerFor } from '../../helpers/server.js';
import { call, signIn, bearerApi } from '../../helpers/admin-http.js';

interface VersionList {
  key: string;
  versions: {
    versionId: string;
    isLatest: boolean;
    deleteMarker: boolean;
    size: number;
    retention: { mode: string; until: string } | null;
    legalHold: boolean;
    locked: boolean;
    lockedForBypass: boolean;
  }[];
  next?: string;
}

const LIFECYCLE =
  '<LifecycleConfiguration><Rule><ID>old-logs</ID><Filter><Prefix>logs/</Prefix></Filter>' +
  '<Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>';

const publicRead = (bucket: string) =>
  JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: `arn:aws:s3:::${bucket}/*` },
    ],
  });

test('a bucket policy set through the admin API is checked as PutBucketPolicy checks it, and applies', async (t) => {
  const server = await startServerFor(t);
  const api = bearerApi(server);
  const bearer = api.headers;
  const patch = (body: unknown) => api.patchBucket('open', body);
  await call(server, 'POST', '/v1/buckets', { headers: bearer, body: '{"name":"open"}' });
  await call(server, 'PUT', '/v1/objects/open/hello.txt', { headers: bearer, body: 'hello' });
  const anonymous = () => fetch(`${server.endpoint}/open/hello.txt`);
  assert.equal((await anonymous()).status, 403);
  const statement = JSON.parse(publicRead('open')) as { Statement: Record<string, unknown>[] };
  const refused: unknown[] = [
    { policy: 42 },
    { policy: 'not json' },
    { policy: '{}' },
    { policy: publicRead('another-bucket') },
    { policy: publicRead('open').replace('s3:GetObject', 's3:NoSuchAction') },
    {
      policy: JSON.stringify({
        ...statement,
        Statement: [{ ...statement.Statement[0], Principal: { AWS: ['GKnosuchkey0000000000000'] } }],
      }),
    },
    { policy: `{"Version":"2012-10-17","Statement":[${'{},'.repeat(30_000)}{}]}` },
    // Nothing is half-applied: the versioning of a request whose policy is refused is not set.
    { versioning: 'Enabled', policy: 'not json' },
  ];
  for (const body of refused) {
    const r = await patch(body);
    assert.ok([400, 413].includes(r.status), `${JSON.stringify(body).slice(0, 80)}: ${r.status} ${r.body}`);
  }
  const unchanged = (await call(server, 'GET', '/v1/buckets/open', { headers: bearer })).json();
  assert.equal(unchanged.policy, null);
  assert.equal(unchanged.versioning, null);
  // A document given as an object is stored as its JSON text; a public one is said to be public.
  const ok = await patch({ policy: JSON.parse(publicRead('open')) });
  assert.equal(ok.status, 200, ok.body.toString());
  assert.equal(ok.json().policyPublic, true);
  const anon = await anonymous();
  assert.equal(anon.status, 200);
  assert.equal(await anon.text(), 'hello');
  const removed = await patch({ policy: null });
  assert.equal(removed.json().policy, null);
  assert.equal((await anonymous()).status, 403);
});

test('versions of a key: listed, downloaded and deleted through the admin API as object lock allows', async (t) => {
  const server = await startServerFor(t);
  const client = server.client();
  t.after(() => client.destroy());
  const bearer = bearerApi(server).headers;
  const admin = (method: string, path: string, body?: unknown, extra: Record<string, string> = {}) =>
    call(server, method, path, {
      headers: { ...bearer, ...extra },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  // Versioning turned on from the console's bucket settings, as S3 clients then see it.
  assert.equal((await admin('POST', '/v1/buckets', { name: 'docs' })).status, 200);
  const enabled = await admin('PATCH', '/v1/buckets/docs', { versioning: 'Enabled' });
  assert.equal(enabled.status, 200, enabled.body.toString());
  assert.equal(enabled.json().versioning, 'Enabled');
  await admin('POST', '/v1/buckets/docs/allow', { accessKeyId: server.accessKeyId, read: true, write: true });
  const v = await client.send(new GetBucketVersioningCommand({ Bucket: 'docs' }));
  assert.equal(v.Status, 'Enabled');
  const ids: string[] = [];
  for (const body of ['first', 'second!', 'third!!'])
    ids.push(
      (await client.send(new PutObjectCommand({ Bucket: 'docs', Key: 'a.txt', Body: body }))).VersionId!,
    );
  await client.send(new PutObjectCommand({ Bucket: 'docs', Key: 'a.txt/not-a-version', Body: 'x' }));

  const list = (await admin('GET', '/v1/objects/docs/a.txt?versions')).json() as unknown as VersionList;
  assert.deepEqual(
    list.versions.map((x) => x.versionId),
    [...ids].reverse(),
    'newest first, and only this key',
  );
  assert.deepEqual(
    list.versions.map((x) => [x.isLatest, x.size]),
    [
      [true, 7],
      [false, 7],
      [false, 5],
    ],
  );
  const old = await admin('GET', `/v1/objects/docs/a.txt?versionId=${ids[0]}`);
  assert.equal(old.status, 200);
  assert.equal(old.body.toString(), 'first');
  assert.match(String(old.headers['content-disposition']), /^attachment/);
  // A version deleted for good; the key's listing shrinks and the current version stays.
  assert.equal((await admin('DELETE', `/v1/objects/docs/a.txt?versionId=${ids[1]}`)).status, 204);
  const after = (await admin('GET', '/v1/objects/docs/a.txt?versions')).json() as unknown as VersionList;
  assert.deepEqual(
    after.versions.map((x) => x.versionId),
    [ids[2], ids[0]],
  );
  // A plain delete leaves a delete marker, listed as the current version.
  assert.equal((await admin('DELETE', '/v1/objects/docs/a.txt')).status, 204);
  const marked = (await admin('GET', '/v1/objects/docs/a.txt?versions')).json() as unknown as VersionList;
  assert.equal(marked.versions[0]?.deleteMarker, true);
  assert.equal(marked.versions[0]?.isLatest, true);

  // Object lock: GOVERNANCE needs the bypass header, COMPLIANCE and a legal hold refuse every delete.
  await client.send(new CreateBucketCommand({ Bucket: 'vault', ObjectLockEnabledForBucket: true }));
  const until = new Date(Date.now() + 3600_000);
  const put = async (key: string, mode: 'GOVERNANCE' | 'COMPLIANCE') =>
    (
      await client.send(
        new PutObjectCommand({
          Bucket: 'vault',
          Key: key,
          Body: key,
          ObjectLockMode: mode,
          ObjectLockRetainUntilDate: until,
        }),
      )
    ).VersionId!;
  const gov = await put('gov', 'GOVERNANCE');
  const comp = await put('comp', 'COMPLIANCE');
  const held = (await client.send(new PutObjectCommand({ Bucket: 'vault', Key: 'held', Body: 'h' })))
    .VersionId!;
  await client.send(
    new PutObjectLegalHoldCommand({ Bucket: 'vault', Key: 'held', LegalHold: { Status: 'ON' } }),
  );
  const lockOf = async (key: string) =>
    ((await admin('GET', `/v1/objects/vault/${key}?versions`)).json() as unknown as VersionList).versions[0]!;
  assert.deepEqual(
    [await lockOf('gov'), await lockOf('comp'), await lockOf('held')].map((x) => [
      x.retention?.mode ?? null,
      x.legalHold,
      x.locked,
      x.lockedForBypass,
    ]),
    [
      ['GOVERNANCE', false, true, false],
      ['COMPLIANCE', false, true, true],
      [null, true, true, true],
    ],
  );
  const bypass = { 'x-amz-bypass-governance-retention': 'true' };
  for (const [key, id] of [
    ['gov', gov],
    ['comp', comp],
    ['held', held],
  ] as const) {
    const r = await admin('DELETE', `/v1/objects/vault/${key}?versionId=${id}`);
    assert.equal(r.status, 403, `${key}: ${r.body.toString()}`);
    assert.equal(r.json().code, 'AccessDenied');
  }
  for (const [key, id] of [
    ['comp', comp],
    ['held', held],
  ] as const)
    assert.equal(
      (await admin('DELETE', `/v1/objects/vault/${key}?versionId=${id}`, undefined, bypass)).status,
      403,
    );
  assert.equal(
    (await admin('DELETE', `/v1/objects/vault/gov?versionId=${gov}`, undefined, bypass)).status,
    204,
  );
  assert.deepEqual(
    ((await admin('GET', '/v1/objects/vault/gov?versions')).json() as unknown as VersionList).versions,
    [],
  );
  // Under object lock, versioning cannot be suspended; and nothing else of the request is applied.
  const suspend = await admin('PATCH', '/v1/buckets/vault', { versioning: 'Suspended', tags: { a: 'b' } });
  assert.equal(suspend.status, 409);
  assert.deepEqual((await admin('GET', '/v1/buckets/vault')).json().tags, {});
});

test('lifecycle rules set through the admin API are checked as S3 checks them, and S3 clients see them', async (t) => {
  const server = await startServerFor(t);
  const api = bearerApi(server);
  const bearer = api.headers;
  const patch = (body: unknown) => api.patchBucket('logs', body);
  await call(server, 'POST', '/v1/buckets', { headers: bearer, body: '{"name":"logs"}' });
  const refused: [unknown, number][] = [
    [{ lifecycle: 42 }, 400],
    [{ lifecycle: ['<x/>'] }, 400],
    [{ lifecycle: 'not xml' }, 400],
    [{ lifecycle: '<LifecycleConfiguration></LifecycleConfiguration>' }, 400],
    [{ lifecycle: LIFECYCLE.replace('<Days>30</Days>', '<Days>-1</Days>') }, 400],
    [
      {
        lifecycle: LIFECYCLE.replace(
          '</LifecycleConfiguration>',
          LIFECYCLE.slice(24, -25) + '</LifecycleConfiguration>',
        ),
      },
      400,
    ],
    [
      { lifecycle: '<!DOCTYPE x [<!ENTITY e "e">]><LifecycleConfiguration>&e;</LifecycleConfiguration>' },
      400,
    ],
    [{ versioning: 'On' }, 400],
    [{ versioning: null }, 400],
    // Nothing is half-applied: the versioning of a request whose lifecycle is refused is not set.
    [{ versioning: 'Enabled', lifecycle: 'not xml' }, 400],
  ];
  for (const [body, status] of refused) {
    const r = await patch(body);
    assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 80)}: ${r.body.toString()}`);
  }
  const huge = await call(server, 'PATCH', '/v1/buckets/logs', {
    headers: bearer,
    body: JSON.stringify({
      lifecycle: `<LifecycleConfiguration>${'<Rule/>'.repeat(20_000)}</LifecycleConfiguration>`,
    }),
  });
  assert.equal(huge.status, 413);
  const unchanged = (await call(server, 'GET', '/v1/buckets/logs', { headers: bearer })).json();
  assert.equal(unchanged.versioning, null);
  assert.equal(unchanged.lifecycle, null);

  // Laid out one element a line, as the console's bucket page shows it.
  const ok = await patch({ lifecycle: LIFECYCLE.replace(/></g, '>\n  <') });
  assert.equal(ok.status, 200, ok.body.toString());
  assert.match(String(ok.json().lifecycle), /<ID>old-logs<\/ID>/);
  await call(server, 'POST', '/v1/buckets/logs/allow', {
    headers: bearer,
    body: JSON.stringify({ accessKeyId: server.accessKeyId, read: true, owner: true }),
  });
  const client = server.client();
  t.after(() => client.destroy());
  const rules = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: 'logs' }));
  assert.equal(rules.Rules?.[0]?.ID, 'old-logs');
  assert.equal(rules.Rules?.[0]?.Expiration?.Days, 30);
  assert.equal((await patch({ lifecycle: null })).json().lifecycle, null);
  await assert.rejects(
    client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: 'logs' })),
    /NoSuchLifecycleConfiguration|lifecycle configuration does not exist/,
  );
});

test("the versions and settings endpoints refuse requests without the admin token, the session's CSRF token or its origin", async (t) => {
  const server = await startServerFor(t);
  const bearer = bearerApi(server).headers;
  await call(server, 'POST', '/v1/buckets', { headers: bearer, body: '{"name":"guarded"}' });
  await call(server, 'PATCH', '/v1/buckets/guarded', { headers: bearer, body: '{"versioning":"Enabled"}' });
  const put = await call(server, 'PUT', '/v1/objects/guarded/k', { headers: bearer, body: 'v1' });
  assert.equal(put.status, 200, put.body.toString());
  const versionId = String(put.headers['x-amz-version-id']);
  assert.match(versionId, /^[0-9a-f]{32}$/);
  const { cookie, csrf } = await signIn(server);
  const own = `http://127.0.0.1:${server.adminPort}`;
  const requests: { method: string; path: string; body?: string; changes: boolean }[] = [
    { method: 'GET', path: '/v1/objects/guarded/k?versions', changes: false },
    { method: 'GET', path: `/v1/objects/guarded/k?versionId=${versionId}`, changes: false },
    { method: 'DELETE', path: `/v1/objects/guarded/k?versionId=${versionId}`, changes: true },
    { method: 'PATCH', path: '/v1/buckets/guarded', body: '{"versioning":"Suspended"}', changes: true },
    {
      method: 'PATCH',
      path: '/v1/buckets/guarded',
      body: JSON.stringify({ lifecycle: LIFECYCLE }),
      changes: true,
    },
    {
      method: 'PATCH',
      path: '/v1/buckets/guarded',
      body: JSON.stringify({ policy: publicRead('guarded') }),
      changes: true,
    },
  ];
  const json = { 'content-type': 'application/json' };
  for (const r of requests) {
    const what = `${r.method} ${r.path}`;
    const send = (headers: Record<string, string>) =>
      call(server, r.method, r.path, {
        headers: { ...json, ...headers },
        ...(r.body ? { body: r.body } : {}),
      });
    assert.equal((await send({})).status, 403, `${what} without a token`);
    assert.equal((await send({ authorization: 'Bearer wrong' })).status, 403, `${what} with a wrong token`);
    assert.equal(
      (await send({ authorization: `Bearer ${server.adminToken}x` })).status,
      403,
      `${what} with a token one character longer`,
    );
    assert.ok(
      [401, 403].includes((await send({ cookie: `coffre_session=${'A'.repeat(43)}` })).status),
      `${what} with a forged session`,
    );
    if (r.changes) {
      assert.equal((await send({ cookie, origin: own })).status, 403, `${what} without the CSRF token`);
      assert.equal(
        (await send({ cookie, origin: own, 'x-coffre-csrf': 'x'.repeat(43) })).status,
        403,
        `${what} with a wrong CSRF token`,
      );
      assert.equal(
        (await send({ cookie, 'x-coffre-csrf': csrf, origin: 'http://evil.example' })).status,
        403,
        `${what} from another origin`,
      );
      assert.equal(
        (await send({ cookie, 'x-coffre-csrf': csrf, 'sec-fetch-site': 'cross-site' })).status,
        403,
        `${what} from another site`,
      );
    }
  }
  // None of those changed anything: the version is there, versioning on, no lifecycle.
  const list = await call(server, 'GET', '/v1/objects/guarded/k?versions', { headers: bearer });
  assert.deepEqual(
    (list.json() as unknown as VersionList).versions.map((x) => x.versionId),
    [versionId],
  );
  const b = (await call(server, 'GET', '/v1/buckets/guarded', { headers: bearer })).json();
  assert.equal(b.versioning, 'Enabled');
  assert.equal(b.lifecycle, null);
  assert.equal(b.policy, null);
  // The signed-in page itself gets through.
  const page = { cookie, 'x-coffre-csrf': csrf, origin: own, 'sec-fetch-site': 'same-origin' };
  assert.equal(
    (await call(server, 'GET', '/v1/objects/guarded/k?versions', { headers: { cookie } })).status,
    200,
  );

  // Hostile version ids and cursors are S3's InvalidArgument, and a PUT names no version.
  for (const path of [
    '/v1/objects/guarded/k?versionId=../../etc',
    '/v1/objects/guarded/k?versionId=' + 'a'.repeat(5000),
    '/v1/objects/guarded/k?versionId=',
    '/v1/objects/guarded/k?versions&after=zzz',
  ]) {
    const r = await call(server, 'GET', path, { headers: bearer });
    assert.equal(r.status, 400, `${path.slice(0, 60)}: ${r.body.toString()}`);
  }
  assert.equal(
    (
      await call(server, 'PUT', `/v1/objects/guarded/k?versionId=${versionId}`, {
        headers: bearer,
        body: 'x',
      })
    ).status,
    400,
  );
  assert.equal(
    (await call(server, 'DELETE', '/v1/objects/guarded/k?versions', { headers: { ...page } })).status,
    405,
  );
  const unknown = await call(server, 'GET', `/v1/objects/guarded/k?versionId=${'0'.repeat(32)}`, {
    headers: bearer,
  });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json().code, 'NoSuchVersion');
  // The node is still up and answering.
  assert.equal((await call(server, 'GET', '/health')).status, 200);
});
