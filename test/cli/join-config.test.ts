// `coffre node init-config FILE`, run on a node of a cluster, writes the whole configuration of a node that
// joins it: the cluster's rpc_secret, this node as bootstrap peer, the cluster's replication factor and region,
// a fresh admin token, mode 0600. The new node starts from that file alone, finds the cluster, prints no access
// key of its own (one made there would not work once it is in the layout), and once in the layout serves the
// cluster's keys and objects.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { COFFRE_BIN, COFFRE_NODE_FLAGS, boundPorts, runCoffre } from '../helpers/server.js';
import { mustRun, newRpcSecret, startNode, waitFor } from '../cluster/cluster-helpers.js';

test('a node started from init-config joins the cluster, prints no key of its own, and serves the cluster', async (t) => {
  const secret = newRpcSecret();
  const first = await startNode({ label: 'first', secretConfig: `rpc_secret = "${secret}"` });
  t.after(() => first.cleanup());
  t.after(() => first.stop());
  const dir = mkdtempSync(join(tmpdir(), 'coffre-joining-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'coffre.toml');
  const written = await mustRun(first, [
    'node',
    'init-config',
    file,
    '--rpc-addr',
    '127.0.0.1:0',
    '--s3-addr',
    '127.0.0.1:0',
    '--admin-addr',
    '127.0.0.1:0',
  ]);
  assert.match(written, /coffre server -c /);
  const text = readFileSync(file, 'utf8');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.match(text, new RegExp(`^rpc_secret = "${secret}"$`, 'm'));
  assert.ok(text.includes(`bootstrap_peers = ["${await first.id()}"]`), text);
  assert.match(text, /^admin_token = "[A-Za-z0-9_-]{40,}"$/m);
  // A second run never replaces the file.
  const again = await runCoffre(['-c', first.configPath, 'node', 'init-config', file]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  assert.equal(readFileSync(file, 'utf8'), text);

  const child = spawn(process.execPath, [...COFFRE_NODE_FLAGS, COFFRE_BIN, 'server', '-c', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.resume();
  const closed = new Promise((r) => child.once('close', r));
  t.after(async () => {
    child.kill('SIGTERM');
    await closed;
  });
  await waitFor(async () => boundPorts(out) !== undefined, 'the joining node starts');
  assert.doesNotMatch(out, /AWS_SECRET_ACCESS_KEY/);
  assert.match(out, /joins a cluster/);
  const joiningId = (await runCoffre(['-c', file, 'node', 'id'])).stdout.trim().split('@')[0]!;
  await waitFor(async () => {
    const status = JSON.parse(await mustRun(first, ['status', '--json'])) as {
      nodes: { id: string; up: boolean }[];
    };
    return status.nodes.some((n) => n.id === joiningId && n.up);
  }, 'the first node sees the joining one up');

  const firstId = (await first.id()).split('@')[0]!;
  for (const id of [firstId, joiningId])
    await mustRun(first, ['layout', 'assign', id.slice(0, 12), '--zone', 'z1', '--capacity', '1G']);
  await mustRun(first, ['layout', 'apply', '--version', '1']);
  const key = JSON.parse(
    await mustRun(first, ['key', 'create', 'cluster-key', '--create-bucket', '--json']),
  ) as {
    accessKeyId: string;
    secretAccessKey: string;
  };
  const viaJoining = new S3Client({
    endpoint: `http://127.0.0.1:${boundPorts(out)!.s3}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
    maxAttempts: 1,
  });
  t.after(() => viaJoining.destroy());
  // The joining node takes the layout as it is sent; until then it answers for itself alone.
  let lastError = '';
  await waitFor(async () => {
    try {
      await viaJoining.send(new CreateBucketCommand({ Bucket: 'joined' }));
      return true;
    } catch (err) {
      lastError = String(err);
      throw err;
    }
  }, 'the cluster key works through the joining node').catch((err: Error) => {
    throw new Error(`${err.message}: ${lastError}`);
  });
  await viaJoining.send(new PutObjectCommand({ Bucket: 'joined', Key: 'k', Body: 'through the new node' }));
  const viaFirst = new S3Client({
    endpoint: first.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
  });
  t.after(() => viaFirst.destroy());
  const got = await viaFirst.send(new GetObjectCommand({ Bucket: 'joined', Key: 'k' }));
  assert.equal(await got.Body!.transformToString(), 'through the new node');
});

test('init-config without a node to start from says what it needs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-joining-'));
  try {
    const r = await runCoffre(['-c', join(dir, 'absent.toml'), 'node', 'init-config', join(dir, 'new.toml')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^coffre: no configuration at .*--join/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
