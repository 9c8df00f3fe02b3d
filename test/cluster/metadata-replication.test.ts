// The metadata tables are copied to another storage node (replication_factor = 2): a write is acknowledged
// only once the copy holds it, so a metadata node whose disk is lost takes no object with it. The copy takes
// over through a layout change — after a crash (the metadata node gone for good) and in a planned handover
// (the node retired while it runs) — and a copy that was down catches up, from the log or, when it is too far
// behind, from a snapshot.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  S3Client,
  type S3ServiceException,
} from '@aws-sdk/client-s3';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const KiB = 1024;

interface Layout {
  version: number;
  metadata?: string;
  metadataCopies?: string[];
}

interface Status {
  metadata: {
    role: string;
    position: { seq: number; id: string };
    resyncing: boolean;
    copies: { id: string; acked: number; up: boolean }[];
  };
}

const layoutOf = async (n: ClusterNode) =>
  JSON.parse(await mustRun(n, ['layout', 'show', '--json'])) as Layout;
const statusOf = async (n: ClusterNode) => JSON.parse(await mustRun(n, ['status', '--json'])) as Status;
const nodeId = async (n: ClusterNode) => (await n.id()).split('@')[0]!;

// Two storage nodes in two zones and a gateway, replication_factor = 2: the metadata node and its copy.
async function withCluster(
  check: (c: { meta: ClusterNode; copy: ClusterNode; gw: ClusterNode; all: ClusterNode[] }) => Promise<void>,
): Promise<void> {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const env = {
    // A short log, so that a copy left behind by a few dozen writes is rebuilt from a snapshot.
    COFFRE_METADATA_LOG_KEEP: '20',
    COFFRE_METADATA_RETRY_MS: '300',
    COFFRE_REBALANCE_RETRY_MS: '500',
  };
  const all = await Promise.all(
    ['s1', 's2', 'gw'].map((label) =>
      startNode({ secretConfig: secret, extraConfig: 'replication_factor = 2', label, env }),
    ),
  );
  try {
    const [s1, s2, gw] = all as [ClusterNode, ClusterNode, ClusterNode];
    await formCluster(s1, [
      { node: s1, zone: 'z1' },
      { node: s2, zone: 'z2' },
      { node: gw, zone: 'z1', gateway: true },
    ]);
    const layout = await layoutOf(s1);
    const meta = layout.metadata === (await nodeId(s1)) ? s1 : s2;
    const copy = meta === s1 ? s2 : s1;
    assert.deepEqual(layout.metadataCopies, [await nodeId(copy)], 'the other storage node holds the copy');
    await check({ meta, copy, gw, all });
  } finally {
    for (const n of all) {
      await n.stop();
      n.cleanup();
    }
  }
}

// Waits until the metadata node reports its copy up to date, and returns where the log stands.
async function copyCaughtUp(meta: ClusterNode): Promise<number> {
  let seq = 0;
  await waitFor(async () => {
    const m = (await statusOf(meta)).metadata;
    seq = m.position.seq;
    return m.role === 'primary' && m.copies.length === 1 && m.copies[0]!.up && m.copies[0]!.acked === seq;
  }, 'the copy holds every entry of the log');
  return seq;
}

async function writeObjects(client: S3Client, bucket: string, count: number): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    // Small ones are stored inline in their record; the others have blocks.
    const data = randomBytes(i % 3 === 0 ? 200 : 20 * KiB + i * 3 * KiB);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `obj/${i}`, Body: data }));
    sums.set(`obj/${i}`, sha(data));
  }
  return sums;
}

async function multipart(client: S3Client, bucket: string, key: string): Promise<string> {
  const parts = [randomBytes(5 * 1024 * KiB), randomBytes(300 * KiB)];
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const etags: string[] = [];
  for (const [i, body] of parts.entries()) {
    const r = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }),
    );
    etags.push(r.ETag!);
  }
  await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  return sha(Buffer.concat(parts));
}

async function readAllBack(client: S3Client, bucket: string, sums: Map<string, string>): Promise<void> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
  assert.deepEqual((listed.Contents ?? []).map((o) => o.Key).sort(), [...sums.keys()].sort());
  for (const [key, sum] of sums) {
    const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(sha(await r.Body!.transformToByteArray()), sum, key);
  }
}

async function applyNext(n: ClusterNode): Promise<{ code: number; stdout: string; stderr: string }> {
  const { version } = await layoutOf(n);
  return n.cli(['layout', 'apply', '--version', String(version + 1)]);
}

// An operator retires the metadata node `metaId` from node `on`, as `coffre layout remove` then `apply`;
// resolves with the new layout once every node of `others` has it.
async function retireMetadataNode(on: ClusterNode, metaId: string, others: ClusterNode[]): Promise<Layout> {
  await mustRun(on, ['layout', 'remove', metaId.slice(0, 12)]);
  const applied = await applyNext(on);
  assert.equal(applied.code, 0, applied.stderr);
  const layout = await layoutOf(on);
  await waitFor(async () => {
    for (const n of others) if ((await layoutOf(n)).version !== layout.version) return false;
    return true;
  }, 'every node adopts the layout');
  return layout;
}

const statusCode = (err: unknown) => (err as S3ServiceException).$metadata?.httpStatusCode;

test('the metadata node lost for good: its copy takes over with every acknowledged write', async () => {
  await withCluster(async ({ meta, copy, gw }) => {
    const client = s3Client(gw.endpoint, meta);
    try {
      await client.send(new CreateBucketCommand({ Bucket: 'kept' }));
      const sums = await writeObjects(client, 'kept', 24);
      sums.set('big', await multipart(client, 'kept', 'big'));
      // A second access key, made on the metadata node: keys are metadata too.
      const made = await mustRun(meta, ['key', 'create', 'second', '--json']);
      const second = JSON.parse(made) as { accessKeyId: string; secretAccessKey: string };
      await mustRun(meta, ['bucket', 'allow', 'kept', '--key', second.accessKeyId, '--read']);
      const seq = await copyCaughtUp(meta);
      assert.ok(seq > 30, `the log holds every write (${seq} entries)`);
      const copyStatus = (await statusOf(copy)).metadata;
      assert.equal(copyStatus.role, 'copy');
      assert.equal(copyStatus.position.seq, seq);

      // The copy goes down: a write cannot be made safe, and says so at once instead of hanging.
      const metaId = await nodeId(meta);
      const refusedWhileDown = async (count: number) => {
        for (let i = 0; i < count; i++) {
          // One byte: stored inline in its record, so only the metadata copy is missing, no block's node.
          const err = await client
            .send(new PutObjectCommand({ Bucket: 'kept', Key: 'while-copy-down', Body: `x${i}` }))
            .then(
              () => undefined,
              (e: unknown) => e,
            );
          assert.equal(statusCode(err), 503, 'a write with no copy to hold it is refused with 503');
          assert.match((err as Error).message, /copies of the metadata/);
        }
      };
      const restartCopy = async () => {
        const logged = copy.stderr().length;
        await copy.start();
        await copyCaughtUp(meta);
        return copy.stderr().slice(logged);
      };
      await copy.kill();
      await refusedWhileDown(3);
      // Reads go on meanwhile, from the metadata node's own tables: every acknowledged write is there, and so
      // may be a refused one (S3's 503 does not say a write did not happen: it stays on the metadata node,
      // uncommitted until the copy is back).
      const refusedWrites = ['x0', 'x1', 'x2'].map((x) => sha(Buffer.from(x)));
      const refusedOne = async () => {
        const r = await client.send(new GetObjectCommand({ Bucket: 'kept', Key: 'while-copy-down' }));
        const got = sha(await r.Body!.transformToByteArray());
        assert.ok(refusedWrites.includes(got), 'the key holds one of the refused writes, whole');
        return got;
      };
      await readAllBack(client, 'kept', new Map([...sums, ['while-copy-down', await refusedOne()]]));
      // Back, it catches up from the log. (A copy rebuilt from a snapshot: metadata-election.test.ts.)
      assert.doesNotMatch(await restartCopy(), /replacing this node.s metadata tables/);
      await copy.kill();
      await refusedWhileDown(3);
      assert.doesNotMatch(await restartCopy(), /replacing this node.s metadata tables/);
      // Either way writes are acknowledged once more.
      const after = randomBytes(30 * KiB);
      await client.send(new PutObjectCommand({ Bucket: 'kept', Key: 'after-return', Body: after }));
      sums.set('after-return', sha(after));
      // Written on the metadata node though refused to the client: S3's 503 does not say a write did not
      // happen, and the copy holds what the metadata node holds.
      sums.set('while-copy-down', await refusedOne());
      await copyCaughtUp(meta);

      // The metadata node dies and its disk is lost.
      await meta.kill();
      rmSync(meta.dir, { recursive: true, force: true });
      // Before anyone acts, reads go on from the copy (which holds every acknowledged write); writes need both.
      await readAllBack(client, 'kept', sums);
      const err = await client
        .send(new PutObjectCommand({ Bucket: 'kept', Key: 'while-meta-down', Body: 'y' }))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.equal(statusCode(err), 503, 'a write with one of two metadata nodes gone is refused');
      // The operator retires it, from the surviving storage node; the copy becomes the metadata node.
      const moved = await retireMetadataNode(copy, metaId, [gw]);
      assert.equal(moved.metadata, await nodeId(copy));

      // Everything acknowledged is there, through the gateway: objects (inline, blocks, multipart), the
      // listing, the access keys and their permissions.
      await readAllBack(client, 'kept', sums);
      const reader = new S3Client({
        endpoint: gw.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: second,
        maxAttempts: 1,
      });
      try {
        const r = await reader.send(new GetObjectCommand({ Bucket: 'kept', Key: 'obj/1' }));
        assert.equal(sha(await r.Body!.transformToByteArray()), sums.get('obj/1'));
      } finally {
        reader.destroy();
      }
      // And it takes writes: the only storage node left has no copy to wait for.
      await client.send(new PutObjectCommand({ Bucket: 'kept', Key: 'new', Body: 'after the failover' }));
      const s = (await statusOf(copy)).metadata;
      assert.equal(s.role, 'primary');
      assert.ok(s.position.seq > seq);
    } finally {
      client.destroy();
    }
  });
});

test('kill -9 of the metadata node in the middle of writes: every write acknowledged survives the failover', async () => {
  await withCluster(async ({ meta, copy, gw }) => {
    const client = s3Client(gw.endpoint, meta);
    try {
      await client.send(new CreateBucketCommand({ Bucket: 'busy' }));
      const acknowledged = new Map<string, string>();
      let writing = true;
      let n = 0;
      const writer = async () => {
        while (writing) {
          const key = `w/${n++}`;
          const data = randomBytes(n % 2 ? 100 : 10 * KiB);
          try {
            await client.send(new PutObjectCommand({ Bucket: 'busy', Key: key, Body: data }));
            acknowledged.set(key, sha(data));
          } catch {
            // Not acknowledged: it may or may not exist afterwards.
          }
        }
      };
      const writers = [writer(), writer(), writer(), writer()];
      await waitFor(async () => acknowledged.size >= 40, 'writes are under way');
      await meta.kill();
      rmSync(meta.dir, { recursive: true, force: true });
      writing = false;
      await Promise.all(writers);
      await retireMetadataNode(copy, (await layoutOf(copy)).metadata!, [gw]);
      for (const [key, sum] of acknowledged) {
        const r = await client.send(new GetObjectCommand({ Bucket: 'busy', Key: key }));
        assert.equal(sha(await r.Body!.transformToByteArray()), sum, key);
      }
    } finally {
      client.destroy();
    }
  });
});

test('a planned handover: retiring the metadata node moves the role to its copy, losing nothing', async () => {
  await withCluster(async ({ meta, copy, gw }) => {
    const client = s3Client(gw.endpoint, meta);
    try {
      await client.send(new CreateBucketCommand({ Bucket: 'moved' }));
      const sums = await writeObjects(client, 'moved', 12);
      const metaId = await nodeId(meta);
      // Run on the metadata node itself, while it serves.
      const layout = await retireMetadataNode(meta, metaId, [gw, copy]);
      assert.equal(layout.metadata, await nodeId(copy));
      await readAllBack(client, 'moved', sums);
      const late = randomBytes(40 * KiB);
      await client.send(new PutObjectCommand({ Bucket: 'moved', Key: 'late', Body: late }));
      sums.set('late', sha(late));
      // The retired node hands its blocks over; its own S3 API now asks the new metadata node, so even a
      // client still sent to it sees the current objects, never its old tables.
      await waitFor(
        async () => /blocks: in place/.test(await mustRun(meta, ['status'])),
        'the retired node has handed its blocks over',
      );
      await readAllBack(client, 'moved', sums);
      const direct = s3Client(meta.endpoint, meta);
      try {
        const listed = await direct.send(new ListObjectsV2Command({ Bucket: 'moved' }));
        assert.ok(listed.Contents?.some((o) => o.Key === 'late'));
      } finally {
        direct.destroy();
      }
    } finally {
      client.destroy();
    }
  });
});

test('the role is not moved while no one can tell which copy is newest', async () => {
  await withCluster(async ({ meta, copy, gw }) => {
    const metaId = await nodeId(meta);
    await meta.kill();
    await copy.kill();
    // Staged and applied on the gateway: neither the metadata node nor its copy can be asked.
    await mustRun(gw, ['layout', 'remove', metaId.slice(0, 12)]);
    const refused = await applyNext(gw);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /unreachable.*bring them back/);
    assert.equal((await layoutOf(gw)).metadata, metaId, 'the layout is unchanged');
    // Once the copy is back it answers, and takes the role.
    await copy.start();
    await waitFor(async () => (await applyNext(gw)).code === 0, 'the layout applies with the copy back');
    assert.equal((await layoutOf(gw)).metadata, await nodeId(copy));
  });
});
