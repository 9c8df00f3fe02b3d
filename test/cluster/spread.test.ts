// Data is spread by the layout: two storage nodes in zones z1 and z2 behind a gateway. With
// replication_factor = 1 every block lives on exactly one of them and both hold some; with 2, every block is
// on both. Everything written through the gateway reads back, through the gateway and through each node.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  blockFiles,
  formCluster,
  newRpcSecret,
  s3Client,
  startNode,
  type ClusterNode,
} from './cluster-helpers.js';

const OBJECTS = 40;
const KiB = 1024;
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

async function withCluster(
  replicationFactor: number,
  check: (nodes: { s1: ClusterNode; s2: ClusterNode; gw: ClusterNode }) => Promise<void>,
): Promise<void> {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const extraConfig = `replication_factor = ${replicationFactor}`;
  const started: ClusterNode[] = [];
  try {
    started.push(
      ...(await Promise.all(
        ['s1', 's2', 'gw'].map((label) => startNode({ secretConfig: secret, extraConfig, label })),
      )),
    );
    const [s1, s2, gw] = started as [ClusterNode, ClusterNode, ClusterNode];
    await formCluster(s1, [
      { node: s1, zone: 'z1' },
      { node: s2, zone: 'z2' },
      { node: gw, zone: 'z1', gateway: true },
    ]);
    await check({ s1, s2, gw });
  } finally {
    for (const n of started) {
      await n.stop();
      n.cleanup();
    }
  }
}

// Uploads OBJECTS objects (one or more blocks each) through the gateway and reads each back through every
// endpoint; returns nothing, throws on any difference.
async function uploadAndReadBack(s1: ClusterNode, s2: ClusterNode, gw: ClusterNode): Promise<void> {
  // The metadata lives on the first storage node by id: its access key is the one the cluster knows.
  const ids = await Promise.all([s1.id(), s2.id()]);
  const keyHolder = ids[0]! < ids[1]! ? s1 : s2;
  const clients = [gw, s1, s2].map((n) => s3Client(n.endpoint, keyHolder));
  const [viaGateway] = clients;
  try {
    await viaGateway!.send(new CreateBucketCommand({ Bucket: 'spread' }));
    const sums = new Map<string, string>();
    for (let i = 0; i < OBJECTS; i++) {
      // Above the inline threshold, so each object has blocks; the last spans three.
      const data = randomBytes(i === OBJECTS - 1 ? 2560 * KiB : 17 * KiB + ((i * 37 * KiB) % (256 * KiB)));
      await viaGateway!.send(new PutObjectCommand({ Bucket: 'spread', Key: `o/${i}`, Body: data }));
      sums.set(`o/${i}`, sha(data));
    }
    for (const [c, client] of clients.entries()) {
      // All through the gateway, a sample through each storage node.
      for (const [key, sum] of [...sums].filter((_, i) => c === 0 || i % 5 === 0 || i === OBJECTS - 1)) {
        const r = await client.send(new GetObjectCommand({ Bucket: 'spread', Key: key }));
        assert.equal(sha(await r.Body!.transformToByteArray()), sum, key);
      }
    }
  } finally {
    for (const c of clients) c.destroy();
  }
}

const names = (n: ClusterNode) => new Set(blockFiles(n).map((p) => basename(p)));

test('replication_factor = 1: blocks are spread over both storage nodes, one copy each', async () => {
  await withCluster(1, async ({ s1, s2, gw }) => {
    await uploadAndReadBack(s1, s2, gw);
    const a = names(s1);
    const b = names(s2);
    assert.ok(a.size > 5 && b.size > 5, `both nodes hold blocks (z1: ${a.size}, z2: ${b.size})`);
    const both = [...a].filter((h) => b.has(h));
    assert.deepEqual(both, [], 'no block is stored twice');
    assert.ok(a.size + b.size >= OBJECTS);
    assert.deepEqual(blockFiles(gw), [], 'the gateway stores nothing');
  });
});

test('replication_factor = 2: every block is on both storage nodes', async () => {
  await withCluster(2, async ({ s1, s2, gw }) => {
    await uploadAndReadBack(s1, s2, gw);
    const a = names(s1);
    const b = names(s2);
    assert.ok(a.size >= OBJECTS, `z1 holds ${a.size} blocks`);
    assert.deepEqual([...a].sort(), [...b].sort());
    assert.deepEqual(blockFiles(gw), []);
  });
});
