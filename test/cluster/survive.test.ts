// A replication_factor = 3 cluster keeps serving when a storage node dies. Three storage nodes in three zones
// and a gateway; clients write and read objects larger than the inline limit through the gateway without a
// pause. A storage node that is not the metadata node is killed with SIGKILL: writes go on (each block needs 2
// of its 3 nodes), every acknowledged object reads back byte-identical, and once the node is restarted the
// copies it missed are written to it from the writers' resync queues. Then scrub finds a damaged block file
// and a deleted one and repairs both from other nodes, and `coffre node forget` drops a dead node from every
// node's peers.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  blockFiles,
  formCluster,
  mustRun,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';

const KiB = 1024;
const BLOCK = 64 * KiB;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const nodeId = async (n: ClusterNode) => (await n.id()).split('@')[0]!;

interface Status {
  nodes: { id: string; up: boolean }[];
  resync: { nodes: { node: string; pending: number }[]; copied: number } | null;
  scrub: {
    running: boolean;
    lastPass: { finishedAt: number; corrupt: number; repaired: number; copiesGiven: number } | null;
  };
  health: {
    state: 'healthy' | 'degraded';
    problems: { problem: string; todo: string }[];
    underReplicated: { node: string; pending: number }[];
  };
}
const statusOf = async (n: ClusterNode) => JSON.parse(await mustRun(n, ['status', '--json'])) as Status;

// The blocks of a plaintext object: its bytes cut every block_size, each named by its SHA-256; a rest of at
// most block_size / 16 joins the last full block (model/segments).
const blocksOf = (data: Buffer) => {
  const full = Math.floor(data.length / BLOCK);
  const rest = data.length - full * BLOCK;
  const cuts = full > 0 && rest <= BLOCK / 16 ? full - 1 : full;
  const hashes: string[] = [];
  for (let i = 0; i < cuts; i++) hashes.push(sha(data.subarray(i * BLOCK, (i + 1) * BLOCK)));
  if (cuts * BLOCK < data.length) hashes.push(sha(data.subarray(cuts * BLOCK)));
  return hashes;
};

const secret = `rpc_secret = "${newRpcSecret()}"`;
const extraConfig = `replication_factor = 3\nblock_size = ${BLOCK}`;
const env = { COFFRE_RESYNC_RETRY_MS: '1000' };
let storage: ClusterNode[] = [];
let gw: ClusterNode;
let meta: ClusterNode;
let client: S3Client;
const acked = new Map<string, Buffer>();

before(async () => {
  storage = await Promise.all(
    ['s1', 's2', 's3'].map((label) => startNode({ secretConfig: secret, extraConfig, label, env })),
  );
  gw = await startNode({ secretConfig: secret, extraConfig, label: 'gw', env });
  await formCluster(storage[0]!, [
    ...storage.map((node, i) => ({ node, zone: `z${i + 1}` })),
    { node: gw, zone: 'z1', gateway: true },
  ]);
  const layout = JSON.parse(await mustRun(gw, ['layout', 'show', '--json'])) as { metadata: string };
  const ids = await Promise.all(storage.map(nodeId));
  meta = storage[ids.indexOf(layout.metadata)]!;
  client = s3Client(gw.endpoint, meta);
  await client.send(new CreateBucketCommand({ Bucket: 'survive' }));
});

after(async () => {
  for (const n of [...storage, gw]) {
    await n?.kill();
    n?.cleanup();
  }
});

test('kill -9 of a storage node that is not the metadata node: writes go on, nothing acknowledged is lost, the node is resynced when it returns', async () => {
  const victim = storage.find((n) => n !== meta)!;
  const victimId = await nodeId(victim);
  let stop = false;
  let writes = 0;
  let failures = 0;
  const failureMessages: string[] = [];
  let killedAt = 0;
  let firstAckAfterKill = 0;
  let readsChecked = 0;
  const writer = (async () => {
    while (!stop) {
      // 20 KiB to about 420 KiB: above the inline limit (16 KiB), one to seven blocks.
      const data = randomBytes(20 * KiB + ((writes * 53 * KiB) % (400 * KiB)));
      const key = `o/${writes++}`;
      const startedAt = Date.now();
      try {
        await client.send(new PutObjectCommand({ Bucket: 'survive', Key: key, Body: data }));
        acked.set(key, data);
        if (killedAt > 0 && startedAt >= killedAt && firstAckAfterKill === 0) firstAckAfterKill = Date.now();
      } catch (err) {
        failures++;
        failureMessages.push(String((err as Error).message));
      }
    }
  })();
  const reader = (async () => {
    while (!stop) {
      const keys = [...acked.keys()];
      if (keys.length === 0) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const key = keys[Math.floor(Math.random() * keys.length)]!;
      const r = await client.send(new GetObjectCommand({ Bucket: 'survive', Key: key }));
      assert.equal(sha(await r.Body!.transformToByteArray()), sha(acked.get(key)!), `read of ${key}`);
      readsChecked++;
    }
  })();
  try {
    await waitFor(async () => acked.size >= 10, 'ten objects are written', 60_000);
    await victim.kill();
    killedAt = Date.now();
    const ackedAtKill = acked.size;
    await waitFor(async () => acked.size >= ackedAtKill + 15, 'fifteen more writes with a node down', 60_000);
    assert.ok(firstAckAfterKill > 0);
    const resumedMs = firstAckAfterKill - killedAt;
    console.log(`first write acknowledged ${resumedMs} ms after the kill; failures: ${failures}`);
    assert.ok(resumedMs < 10_000, `writes resumed ${resumedMs} ms after the kill`);

    // The cluster says it is degraded, and which copies wait for which node.
    const degraded = await statusOf(gw);
    assert.equal(degraded.health.state, 'degraded');
    assert.ok(
      degraded.health.problems.some(
        ({ problem: p }) => p.includes(victimId.slice(0, 16)) && p.includes('down'),
      ),
    );
    assert.ok(
      degraded.health.underReplicated.some((u) => u.node === victimId && u.pending > 0),
      JSON.stringify(degraded.health),
    );
    const text = (await mustRun(gw, ['status'])).toString();
    assert.match(text, /cluster: DEGRADED/);
    assert.match(text, /block copies wait to be written to/);
    assert.match(text, /to do:/);

    await victim.start();
    await waitFor(
      async () => {
        for (const n of [gw, ...storage]) {
          const s = await statusOf(n);
          if ((s.resync?.nodes ?? []).some((q) => q.node === victimId)) return false;
        }
        return true;
      },
      'every resync queue for the restarted node is empty',
      120_000,
    );
  } finally {
    stop = true;
    await Promise.all([writer, reader]);
  }
  console.log(`${acked.size} objects acknowledged, ${failures} writes failed, ${readsChecked} reads checked`);
  // Every write should have found a quorum: the one node down never leaves fewer than 2 of 3.
  assert.equal(failures, 0, failureMessages.slice(0, 3).join('\n'));

  // The restarted node holds every block of every acknowledged object (all 3 nodes hold every block here).
  const held = new Set(blockFiles(victim).map((p) => basename(p)));
  for (const [key, data] of acked)
    for (const hash of blocksOf(data))
      assert.ok(held.has(hash), `${key}: block ${hash} on the restarted node`);
  // And every acknowledged object reads back byte-identical, through the gateway and from the restarted node.
  const direct = s3Client(victim.endpoint, meta);
  for (const [key, data] of acked) {
    for (const c of [client, direct]) {
      const r = await c.send(new GetObjectCommand({ Bucket: 'survive', Key: key }));
      assert.equal(sha(await r.Body!.transformToByteArray()), sha(data), key);
    }
  }
  const healthy = await statusOf(gw);
  await waitFor(
    async () => (await statusOf(gw)).health.state === 'healthy',
    'the cluster is healthy again',
    30_000,
  );
  assert.ok(healthy);
});

test('scrub finds a damaged block file and a deleted one and repairs both from other nodes', async () => {
  const [key, data] = [...acked].find(([, d]) => d.length > 2 * BLOCK)!;
  const [damagedHash, deletedHash] = blocksOf(data);
  const [a, b] = storage.filter((n) => n !== meta);
  const damagedPath = blockFiles(a!).find((p) => basename(p) === damagedHash)!;
  const deletedPath = blockFiles(b!).find((p) => basename(p) === deletedHash)!;
  const bytes = readFileSync(damagedPath);
  bytes[100] ^= 0xff;
  writeFileSync(damagedPath, bytes);
  rmSync(deletedPath);

  // Reads pass over the damaged copy on the node asked and the missing one.
  for (const n of [a!, b!]) {
    const r = await s3Client(n.endpoint, meta).send(new GetObjectCommand({ Bucket: 'survive', Key: key }));
    assert.equal(sha(await r.Body!.transformToByteArray()), sha(data));
  }

  const passEnded = async (n: ClusterNode, since: number) => {
    const s = await statusOf(n);
    return !s.scrub.running && (s.scrub.lastPass?.finishedAt ?? 0) >= since;
  };
  const since = Date.now();
  for (const n of storage) assert.match(await mustRun(n, ['scrub']), /scrub: pass started/);
  for (const n of storage) await waitFor(() => passEnded(n, since), `scrub pass on ${n.label} ends`, 120_000);

  assert.equal(sha(readFileSync(damagedPath)), damagedHash, 'the damaged copy is replaced');
  assert.ok(existsSync(deletedPath), 'the deleted copy is back');
  assert.equal(sha(readFileSync(deletedPath)), deletedHash);
  const onA = await statusOf(a!);
  assert.equal(onA.scrub.lastPass!.corrupt, 1);
  assert.equal(onA.scrub.lastPass!.repaired, 1);
  const given = await Promise.all(storage.filter((n) => n !== b).map(statusOf));
  assert.ok(
    given.some((s) => s.scrub.lastPass!.copiesGiven >= 1),
    'a node gave the deleted copy back',
  );
  assert.match(await mustRun(a!, ['status']), /scrub: last pass ended .*1 damaged, 1 repaired/);

  const token = /admin_token = "([^"]+)"/.exec(readFileSync(a!.configPath, 'utf8'))![1]!;
  const metrics = await fetch(`http://127.0.0.1:${a!.adminPort}/metrics`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const text = await metrics.text();
  assert.match(text, /^coffre_scrub_last_pass_blocks_repaired 1$/m);
  assert.match(text, /^coffre_scrub_last_pass_blocks_checked \d+$/m);
  // Scrub and forget are admin operations: no token, no scrub.
  const refused = await fetch(`http://127.0.0.1:${a!.adminPort}/v1/scrub`, { method: 'POST' });
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
});

test('coffre node forget drops a dead node that is not in the layout from every node, and refuses one that is', async () => {
  const stray = await startNode({ secretConfig: secret, extraConfig, label: 'stray', env });
  try {
    const strayId = await nodeId(stray);
    await mustRun(stray, ['node', 'connect', await storage[0]!.id()]);
    const knows = async (n: ClusterNode) => (await statusOf(n)).nodes.some((p) => p.id === strayId);
    for (const n of [gw, ...storage]) await waitFor(() => knows(n), `${n.label} learns of the stray node`);
    await stray.kill();

    const inLayout = await gw.cli(['node', 'forget', (await nodeId(storage[1]!)).slice(0, 12)]);
    assert.notEqual(inLayout.code, 0);
    assert.match(inLayout.stderr, /still has a role in layout version \d+: remove it first/);
    assert.equal(inLayout.stderr.trim().split('\n').length, 1, inLayout.stderr);

    const out = await mustRun(gw, ['node', 'forget', strayId.slice(0, 12)]);
    assert.match(out, /forgot [0-9a-f]{16}… here and on 3 other nodes/);
    for (const n of [gw, ...storage]) {
      assert.equal(await knows(n), false, `${n.label} no longer lists the stray node`);
      const saved = JSON.parse(readFileSync(`${n.dir}/meta/peers.json`, 'utf8')) as { forgotten: string[] };
      assert.ok(saved.forgotten.includes(strayId));
    }
    // Peers still exchange their lists: none brings the forgotten node back.
    const logged = storage.map((n) => n.stderr().length);
    await new Promise((r) => setTimeout(r, 2_000));
    for (const n of [gw, ...storage]) assert.equal(await knows(n), false);
    storage.forEach((n, i) =>
      assert.doesNotMatch(
        n.stderr().slice(logged[i]),
        new RegExp(`cannot connect to ${strayId.slice(0, 16)}`),
      ),
    );
  } finally {
    stray.cleanup();
  }
});

test('with two of three storage nodes down a write is refused at once with a retryable 503 and leaves nothing behind', async () => {
  const down = storage.filter((n) => n !== meta);
  await Promise.all(down.map((n) => n.kill()));
  try {
    const data = randomBytes(200 * KiB);
    const startedAt = Date.now();
    const err = await client
      .send(new PutObjectCommand({ Bucket: 'survive', Key: 'refused', Body: data }))
      .then(
        () => undefined,
        (e: unknown) => e as { name: string; message: string; $metadata: { httpStatusCode?: number } },
      );
    assert.ok(err, 'the write was acknowledged without a quorum');
    console.log(`refused after ${Date.now() - startedAt} ms: ${err.message}`);
    assert.equal(err.$metadata.httpStatusCode, 503);
    assert.equal(err.name, 'ServiceUnavailable');
    // Refused by the blocks' quorum, not after waiting for anything.
    assert.match(err.message, /write quorum of this block's storage nodes \(2 of 3, [01] reached\)/);
    const retryAfter = (err as unknown as { $response?: { headers: Record<string, string> } }).$response
      ?.headers['retry-after'];
    assert.equal(retryAfter, '1');
    // The key is absent: no record was committed.
    const read = await client.send(new GetObjectCommand({ Bucket: 'survive', Key: 'refused' })).then(
      () => 'found',
      (e: { name: string }) => e.name,
    );
    assert.equal(read, 'NoSuchKey');
    const s = await statusOf(gw);
    assert.ok(
      s.health.problems.some(({ problem }) =>
        /writes of blocks placed on 2 or more down nodes fail/.test(problem),
      ),
    );
  } finally {
    await Promise.all(down.map((n) => n.start()));
  }
  await waitFor(
    async () => (await statusOf(gw)).health.state === 'healthy',
    'the cluster is whole again',
    60_000,
  );
  await client.send(new PutObjectCommand({ Bucket: 'survive', Key: 'after', Body: randomBytes(100 * KiB) }));
});
