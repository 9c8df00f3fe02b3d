// The admin side of a node: /health, /metrics (guarded by metrics_token), the token-guarded admin API, and the
// key and bucket commands a user runs against it (with --json, and one-line errors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { runCoffre, startServer, startServerFor } from '../../helpers/server.js';

test('/metrics need a token when none is configured for them; metrics_public = true opens them', async (t) => {
  const closed = await startServer();
  const open = await startServer({ adminExtra: 'metrics_public = true' });
  t.after(async () => {
    for (const s of [closed, open]) {
      await s.stop();
      s.cleanup();
    }
  });
  assert.equal((await fetch(`${closed.adminEndpoint}/metrics`)).status, 403);
  const withToken = await fetch(`${closed.adminEndpoint}/metrics`, {
    headers: { authorization: `Bearer ${closed.adminToken}` },
  });
  assert.equal(withToken.status, 200);
  assert.match(await withToken.text(), /coffre_/);
  const public_ = await fetch(`${open.adminEndpoint}/metrics`);
  assert.equal(public_.status, 200);
  await public_.text();
});

test('health, metrics, admin token, and the key and bucket commands', async (t) => {
  const server = await startServerFor(t, { adminExtra: 'metrics_token = "metrics-secret"' });
  const health = await fetch(`${server.adminEndpoint}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');

  assert.equal((await fetch(`${server.adminEndpoint}/metrics`)).status, 403);
  assert.equal((await fetch(`${server.adminEndpoint}/v1/keys`)).status, 403);
  assert.equal(
    (await fetch(`${server.adminEndpoint}/v1/keys`, { headers: { authorization: 'Bearer wrong' } })).status,
    403,
  );

  const cfg = ['--config', server.configPath];
  const created = await runCoffre([...cfg, 'key', 'create', 'alice', '--json']);
  assert.equal(created.code, 0, created.stderr);
  const alice = JSON.parse(created.stdout) as { accessKeyId: string; secretAccessKey: string };
  assert.match(alice.accessKeyId, /^GK[0-9a-f]{24}$/);
  assert.match(alice.secretAccessKey, /^[0-9a-f]{64}$/);

  const bucket = await runCoffre([...cfg, 'bucket', 'create', 'shared', '--json']);
  assert.equal(bucket.code, 0, bucket.stderr);
  // alice has no permission yet: S3 refuses her.
  const aliceClient = server.client();
  aliceClient.config.credentials = async () => ({
    accessKeyId: alice.accessKeyId,
    secretAccessKey: alice.secretAccessKey,
  });
  await assert.rejects(aliceClient.send(new PutObjectCommand({ Bucket: 'shared', Key: 'k', Body: 'x' })), {
    name: 'AccessDenied',
  });
  const allow = await runCoffre([
    ...cfg,
    'bucket',
    'allow',
    'shared',
    '--key',
    'alice',
    '--read',
    '--write',
    '--json',
  ]);
  assert.equal(allow.code, 0, allow.stderr);
  await aliceClient.send(new PutObjectCommand({ Bucket: 'shared', Key: 'k', Body: 'x' }));
  const info = JSON.parse((await runCoffre([...cfg, 'bucket', 'info', 'shared', '--json'])).stdout) as {
    objects: number;
    keys: { accessKeyId: string; read: boolean; write: boolean; owner: boolean }[];
  };
  assert.equal(info.objects, 1);
  assert.deepEqual(
    info.keys.find((k) => k.accessKeyId === alice.accessKeyId),
    { accessKeyId: alice.accessKeyId, name: 'alice', read: true, write: true, owner: false },
  );
  const keyInfo = JSON.parse((await runCoffre([...cfg, 'key', 'info', 'alice', '--json'])).stdout) as {
    secretAccessKey?: string;
    buckets: unknown[];
  };
  assert.equal(keyInfo.secretAccessKey, undefined, 'key info hides the secret unless asked');
  assert.equal(keyInfo.buckets.length, 1);

  // Metrics count the requests, behind their token.
  const metrics = await fetch(`${server.adminEndpoint}/metrics`, {
    headers: { authorization: 'Bearer metrics-secret' },
  });
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /coffre_s3_requests_total\{operation="PutObject",status="200"\} 1/);
  // The admin token opens them too; anything else does not.
  const byAdmin = await fetch(`${server.adminEndpoint}/metrics`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  assert.equal(byAdmin.status, 200);
  await byAdmin.text();

  // A user's mistakes: one line on stderr, non-zero exit, no stack trace.
  for (const args of [
    ['bucket', 'create', 'Bad_Name'],
    ['bucket', 'allow', 'shared', '--key', 'nobody', '--read'],
    ['bucket', 'delete', 'shared'],
    ['key', 'info', 'nobody'],
    ['bucket', 'frobnicate'],
  ]) {
    const r = await runCoffre([...cfg, ...args]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  const missing = await runCoffre(['--config', '/nonexistent/coffre.toml', 'key', 'list']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not found/);

  const del = await runCoffre([...cfg, 'key', 'delete', 'alice', '--json']);
  assert.equal(del.code, 0, del.stderr);
  await assert.rejects(aliceClient.send(new PutObjectCommand({ Bucket: 'shared', Key: 'k2', Body: 'x' })), {
    name: 'InvalidAccessKeyId',
  });
});

test('unknown config keys and bad values are refused at start, naming the key', async () => {
  for (const [extra, expected] of [
    ['frobnicate = 1', /unknown key frobnicate/],
    ['replication_factor = "three"', /replication_factor must be an integer/],
  ] as const) {
    await assert.rejects(startServer({ extraConfig: extra }), expected);
  }
});
