// Blocks of an upload through a gateway that fails midway reach the storage node but no record ever refers to
// them. The storage node's sweep (grace and interval shortened here) finds them, checks them with the
// metadata node, and removes them; the blocks of committed objects stay and read back.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  blockFiles,
  formCluster,
  newRpcSecret,
  s3Client,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');
const names = (n: ClusterNode) => new Set(blockFiles(n).map((p) => basename(p)));

test('blocks of an upload that failed through the gateway are swept from the storage node; committed ones stay', async () => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const env = { COFFRE_ORPHAN_GRACE_MS: '1500', COFFRE_ORPHAN_SWEEP_MS: '1000' };
  const started: ClusterNode[] = [];
  try {
    const storage = await startNode({ secretConfig: secret, label: 'storage', env });
    started.push(storage);
    const gateway = await startNode({ secretConfig: secret, label: 'gateway', env });
    started.push(gateway);
    await formCluster(storage, [
      { node: storage, zone: 'z1' },
      { node: gateway, zone: 'z1', gateway: true },
    ]);
    const client = s3Client(gateway.endpoint, storage);
    await client.send(new CreateBucketCommand({ Bucket: 'sweep' }));
    const kept = randomBytes(3 * MiB);
    await client.send(new PutObjectCommand({ Bucket: 'sweep', Key: 'kept', Body: kept }));
    const committed = names(storage);
    assert.equal(committed.size, 3);

    // 2 MiB of a 4 MiB body, then the client gives up (closes the connection).
    const abort = new AbortController();
    async function* stalling() {
      yield randomBytes(MiB);
      yield randomBytes(MiB);
      setTimeout(() => abort.abort(), 1000);
      await new Promise((r) => setTimeout(r, 60_000).unref());
    }
    await assert.rejects(
      client.send(
        new PutObjectCommand({
          Bucket: 'sweep',
          Key: 'failed',
          Body: Readable.from(stalling()),
          ContentLength: 4 * MiB,
        }),
        { abortSignal: abort.signal },
      ),
    );
    await waitFor(async () => names(storage).size > committed.size, 'the failed upload left blocks');

    await waitFor(
      async () => [...names(storage)].sort().join() === [...committed].sort().join(),
      'the sweep removes them, and only them',
    );
    const got = await client.send(new GetObjectCommand({ Bucket: 'sweep', Key: 'kept' }));
    assert.equal(sha(await got.Body!.transformToByteArray()), sha(kept));
    client.destroy();
  } finally {
    for (const n of started) {
      await n.stop();
      n.cleanup();
    }
  }
});
