// Growing and shrinking a cluster keeps every object readable. Two storage nodes hold the data
// (replication_factor = 1); a third joins while it is down, so its share of blocks stays where it was and reads
// find it there; once it is up the blocks move to it. Then a node's role is removed and it drains. The node
// holding the metadata keeps it when a node joins, and cannot be removed. Objects deleted while blocks wait to
// move leave no block behind.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  blockFiles,
  createNode,
  formCluster,
  mustRun,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';

const KiB = 1024;
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');
const names = (n: ClusterNode) => blockFiles(n).map((p) => basename(p));
const shortId = async (n: ClusterNode) => (await n.id()).split('@')[0]!;

interface Rebalance {
  running: boolean;
  settledVersion: number | null;
}

async function settled(node: ClusterNode, version: number): Promise<boolean> {
  const s = JSON.parse(await mustRun(node, ['status', '--json'])) as { rebalance: Rebalance };
  return !s.rebalance.running && s.rebalance.settledVersion === version;
}

async function readAll(client: S3Client, sums: Map<string, string>): Promise<void> {
  for (const [key, sum] of sums) {
    const r = await client.send(new GetObjectCommand({ Bucket: 'grow', Key: key }));
    assert.equal(sha(await r.Body!.transformToByteArray()), sum, key);
  }
}

test('a node joins (first down, then up) and another leaves: blocks move, nothing is lost, everything reads back', async () => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const extraConfig = 'replication_factor = 1';
  const env = { COFFRE_REBALANCE_RETRY_MS: '1000' };
  const started: ClusterNode[] = [];
  try {
    const [a, b] = await Promise.all(
      ['a', 'b'].map((label) => startNode({ secretConfig: secret, extraConfig, label, env })),
    );
    started.push(a!, b!);
    await formCluster(a!, [
      { node: a!, zone: 'z1' },
      { node: b!, zone: 'z2' },
    ]);
    // The metadata lives on the first storage node by id, for good.
    const [meta, other] = (await shortId(a!)) < (await shortId(b!)) ? [a!, b!] : [b!, a!];
    const client = s3Client(meta.endpoint, meta);
    await client.send(new CreateBucketCommand({ Bucket: 'grow' }));
    const sums = new Map<string, string>();
    for (let i = 0; i < 30; i++) {
      const data = randomBytes(i === 29 ? 2560 * KiB : 17 * KiB + ((i * 37 * KiB) % (256 * KiB)));
      await client.send(new PutObjectCommand({ Bucket: 'grow', Key: `o/${i}`, Body: data }));
      sums.set(`o/${i}`, sha(data));
    }
    const stored = new Set([...names(a!), ...names(b!)]);

    // A third storage node joins the layout while it is down: the blocks it should hold stay where they are.
    const c = await createNode({ secretConfig: secret, extraConfig, label: 'c', env });
    started.push(c);
    const cId = await shortId(c);
    assert.ok(cId < (await shortId(meta)) || cId > (await shortId(meta)));
    await mustRun(meta, ['layout', 'assign', cId, '--zone', 'z3', '--capacity', '10G']);
    await mustRun(meta, ['layout', 'apply', '--version', '2']);
    await readAll(client, sums);
    assert.deepEqual(new Set([...names(a!), ...names(b!)]), stored, 'no block moved or went missing');

    // Objects deleted meanwhile: their blocks go from wherever they are, not only from their new node.
    const deleted = Array.from({ length: 10 }, (_, i) => `o/${i}`);
    for (const key of deleted) {
      await client.send(new DeleteObjectCommand({ Bucket: 'grow', Key: key }));
      // Each is one block (above the inline threshold, under the block size), named by its bytes' hash.
      assert.ok(stored.delete(sums.get(key)!), `${key} is one block`);
      sums.delete(key);
    }
    await waitFor(
      async () => new Set([...names(a!), ...names(b!)]).size === stored.size,
      "the collector removes the deleted objects' blocks",
    );
    const before = stored;

    // Up and connected: its share moves to it, and leaves the others.
    await c.start();
    await mustRun(c, ['node', 'connect', await meta.id()]);
    await waitFor(async () => {
      for (const n of [a!, b!, c]) if (!(await settled(n, 2))) return false;
      return true;
    }, 'every node has its blocks in place for layout version 2');
    const [na, nb, nc] = [names(a!), names(b!), names(c)];
    assert.ok(nc.length > 0, 'the new node holds blocks');
    assert.equal(na.length + nb.length + nc.length, before.size, 'each block is stored exactly once');
    assert.deepEqual(new Set([...na, ...nb, ...nc]), before);
    await readAll(client, sums);
    const viaNew = s3Client(c.endpoint, meta);
    await readAll(viaNew, sums);
    viaNew.destroy();
    assert.match(await mustRun(meta, ['status']), /blocks: in place for layout version 2/);

    // The other original node leaves: it drains, and its blocks are found on the nodes that remain.
    await mustRun(meta, ['layout', 'remove', await shortId(other)]);
    await mustRun(meta, ['layout', 'apply', '--version', '3']);
    await waitFor(async () => {
      for (const n of [meta, c, other]) if (!(await settled(n, 3))) return false;
      return names(other).length === 0;
    }, 'the removed node has handed over all its blocks');
    assert.deepEqual(new Set([...names(meta), ...names(c)]), before);
    assert.equal(names(meta).length + names(c).length, before.size);
    await other.stop();
    await readAll(client, sums);

    // The node holding the metadata cannot leave: its tables are not replicated.
    await mustRun(meta, ['layout', 'remove', await shortId(meta)]);
    const refused = await meta.cli(['layout', 'apply', '--version', '4']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /holds the cluster's metadata/);
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'one line, no stack trace');
    client.destroy();
  } finally {
    for (const n of started) {
      await n.stop();
      n.cleanup();
    }
  }
});
