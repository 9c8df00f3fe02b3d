// A network partition, in network namespaces this test makes (one per storage node, joined by a bridge;
// the cut is made with blackhole routes): the node leading the metadata, cut off from the other two, never
// acknowledges a write — not one sent to it directly, not one through any other node — while the two elect a
// new leader and go on. After healing, the old leader follows the new one, what it wrote alone is taken back,
// nothing acknowledged is lost, and the history of keys written and read throughout is linearizable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeBridgedNet } from '../helpers/netns.js';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  startNode,
  waitFor,
  type ClusterNode,
} from './cluster-helpers.js';
import { Workload, client, pause, sha256, untilWriteAcknowledged, metadataStatus } from './history.js';

test(
  'the leader cut off from the majority acknowledges nothing; the majority elects another; healing loses nothing',
  { timeout: 600_000 },
  async (t) => {
    const net = makeBridgedNet(t, 3);
    if (!net) {
      t.skip('network namespaces cannot be made here (needs root)');
      return;
    }
    const secret = `rpc_secret = "${newRpcSecret()}"`;
    const env = { COFFRE_METADATA_RETRY_MS: '300' };
    const extraConfig = 'replication_factor = 3';
    const storage = await Promise.all(
      net.nodes.map(({ ns, addr }, i) =>
        startNode({ secretConfig: secret, extraConfig, label: `s${i + 1}`, env, host: addr, netns: ns }),
      ),
    );
    // The gateway (and this test) stay outside, on the bridge: they reach every node, cut or not.
    const gw = await startNode({ secretConfig: secret, extraConfig, label: 'gw', env, host: net.hostAddr });
    const nodes = [...storage, gw];
    const clients = new Map<ClusterNode, S3Client>();
    let workload: Workload | undefined;
    try {
      await formCluster(storage[0]!, [
        ...storage.map((node, i) => ({ node, zone: `z${i + 1}` })),
        { node: gw, zone: 'z1', gateway: true },
      ]);
      const layout = JSON.parse(await mustRun(gw, ['layout', 'show', '--json'])) as { metadata: string };
      const keyHolder = (
        await Promise.all(storage.map(async (n) => [n, (await n.id()).split('@')[0]] as const))
      ).find(([, id]) => id === layout.metadata)![0];
      for (const n of nodes) clients.set(n, client(n.endpoint, keyHolder));
      const leaderAmong = async (among: ClusterNode[], minTerm = 0): Promise<ClusterNode> => {
        let found: ClusterNode | undefined;
        await waitFor(async () => {
          for (const n of among) {
            const s = await metadataStatus(n);
            if (s.role === 'primary' && s.term >= minTerm) found = n;
          }
          return found !== undefined;
        }, 'a node leads the metadata');
        return found!;
      };
      const old = await leaderAmong(storage);
      const oldTerm = (await metadataStatus(old)).term;
      await waitFor(async () => {
        await clients.get(gw)!.send(new CreateBucketCommand({ Bucket: 'split' }));
        return true;
      }, 'the bucket is created');
      workload = new Workload('split', () => nodes.map((n) => clients.get(n)!));
      workload.start();
      await waitFor(async () => workload!.acknowledged.size >= 50, 'writes are under way', 60_000);

      // The cut. Writes sent to the old leader itself, from the first instant on, are never acknowledged.
      net.isolate([storage.indexOf(old)]);
      const cutAt = performance.now();
      const direct = clients.get(old)!;
      let acknowledgedAlone = 0;
      const alone = (async () => {
        for (let i = 0; performance.now() - cutAt < 15_000; i++) {
          await direct
            .send(new PutObjectCommand({ Bucket: 'split', Key: `alone/${i}`, Body: `written alone ${i}` }))
            .then(
              () => acknowledgedAlone++,
              () => undefined,
            );
          await pause(200);
        }
      })();
      const majority = storage.filter((n) => n !== old);
      const fresh = await leaderAmong(majority, oldTerm + 1);
      t.diagnostic(`new leader ${fresh.label} after ${(performance.now() - cutAt).toFixed(0)} ms`);
      for (const n of [...majority, gw]) {
        const ms = await untilWriteAcknowledged(clients.get(n)!, 'split', 30_000);
        assert.ok(ms !== undefined, `writes go on through ${n.label}`);
      }
      // The old leader gives up leading by itself: a majority has not answered it for a while.
      await waitFor(
        async () => (await metadataStatus(old)).role !== 'primary',
        'the cut-off leader steps down',
        30_000,
      );
      await alone;
      assert.equal(acknowledgedAlone, 0, 'a node cut off from the majority acknowledged a write');

      // Healing: the old leader follows the new term and catches up.
      const logged = old.stderr().length;
      net.heal();
      await waitFor(
        async () => {
          const theirs = await metadataStatus(await leaderAmong(majority, oldTerm + 1));
          const mine = await metadataStatus(old);
          return mine.role === 'copy' && mine.term === theirs.term && mine.position.seq >= theirs.committed;
        },
        'the old leader follows the new one and catches up',
        60_000,
      );
      t.diagnostic(
        /took back metadata entries/.test(old.stderr().slice(logged))
          ? 'the old leader took back what it wrote alone'
          : 'the old leader had nothing to take back',
      );
      await pause(1000);
      await workload.stop();

      const acknowledged: [string, string][] = [...workload.acknowledged];
      for (const n of nodes) {
        const s3 = clients.get(n)!;
        for (const [key, sum] of acknowledged) {
          const r = await s3.send(new GetObjectCommand({ Bucket: 'split', Key: key }));
          assert.equal(sha256(await r.Body!.transformToByteArray()), sum, `${key} through ${n.label}`);
        }
        // What the old leader wrote alone was never acknowledged, and no majority held it: it is gone.
        await assert.rejects(
          s3.send(new GetObjectCommand({ Bucket: 'split', Key: 'alone/0' })),
          (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode === 404,
        );
      }
      for (const { key, ops, ok } of workload.check()) {
        t.diagnostic(`history of ${key}: ${ops} operations`);
        assert.equal(ok, true, `the history of ${key} is linearizable`);
      }
    } finally {
      net.heal();
      await workload?.stop();
      for (const c of clients.values()) c.destroy();
      for (const n of nodes) {
        await n.stop();
        n.cleanup();
      }
    }
  },
);
