// bench/failover: how long the cluster stops taking writes when the node leading its metadata dies. Three
// storage nodes (replication_factor = 3) and a gateway on loopback; each run kills -9 the leader while a
// client writes small objects through the gateway, and times from the kill to the first write acknowledged
// after it (the election timeout, 2–4 s by default, the election, and the gateway finding the new leader).
// The old leader is restarted and caught up before the next run. Prints p50, p99 and max over the runs.
//
//   npx tsc -p tsconfig.json && node dist/bench/failover.js [runs (default 8)]
//
// Bounded by BUDGET_MS (runs that would start later are skipped).
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  startNode,
  waitFor,
  type ClusterNode,
} from '../test/cluster/cluster-helpers.js';
import { client, pause, metadataStatus } from '../test/cluster/history.js';
import { printMarkdownTable } from './lib/figures.js';

const BUDGET_MS = 240_000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 8);
  const began = Date.now();
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const nodes = await Promise.all(
    ['s1', 's2', 's3', 'gw'].map((label) =>
      startNode({ secretConfig: secret, extraConfig: 'replication_factor = 3', label }),
    ),
  );
  const [s1, s2, s3, gw] = nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
  const storage = [s1, s2, s3];
  try {
    await formCluster(s1, [
      { node: s1, zone: 'z1' },
      { node: s2, zone: 'z2' },
      { node: s3, zone: 'z3' },
      { node: gw, zone: 'z1', gateway: true },
    ]);
    const layout = JSON.parse(await mustRun(s1, ['layout', 'show', '--json'])) as { metadata: string };
    let keyHolder = s1;
    for (const n of storage) if ((await n.id()).startsWith(layout.metadata)) keyHolder = n;
    const s3c = client(gw.endpoint, keyHolder);
    await waitFor(async () => {
      await s3c.send(new CreateBucketCommand({ Bucket: 'failover' }));
      return true;
    }, 'the bucket is created');
    const leader = async (): Promise<ClusterNode> => {
      let found: ClusterNode | undefined;
      await waitFor(async () => {
        for (const n of storage)
          if (n.process?.exitCode === null && (await metadataStatus(n)).role === 'primary') found = n;
        return found !== undefined;
      }, 'a node leads');
      return found!;
    };
    const times: number[] = [];
    for (let run = 0; run < runs && Date.now() - began < BUDGET_MS; run++) {
      const victim = await leader();
      let killedAt = 0;
      let firstAfter: number | undefined;
      let writing = true;
      const writer = (async () => {
        while (writing) {
          const sent = performance.now();
          try {
            await s3c.send(
              new PutObjectCommand({
                Bucket: 'failover',
                Key: `w/${randomBytes(6).toString('hex')}`,
                Body: 'x',
              }),
            );
            if (killedAt && sent >= killedAt && firstAfter === undefined)
              firstAfter = performance.now() - killedAt;
          } catch {
            await pause(20);
          }
        }
      })();
      await pause(500);
      killedAt = performance.now();
      await victim.kill();
      await waitFor(async () => firstAfter !== undefined, 'a write is acknowledged after the kill', 60_000);
      writing = false;
      await writer;
      times.push(firstAfter!);
      console.error(`run ${run + 1}: ${firstAfter!.toFixed(0)} ms`);
      await victim.start();
      await waitFor(
        async () => {
          const theirs = await metadataStatus(await leader());
          const mine = await metadataStatus(victim);
          return mine.role === 'copy' && mine.term === theirs.term && mine.position.seq >= theirs.committed;
        },
        'the old leader catches up',
        60_000,
      );
    }
    s3c.destroy();
    const sorted = [...times].sort((a, b) => a - b);
    printMarkdownTable(
      [
        `Time from kill -9 of the metadata leader to the first write acknowledged through the gateway ` +
          `(replication_factor = 3, ${times.length} runs, default election timeout 2–4 s)`,
      ],
      ['runs', 'p50 (ms)', 'p99 (ms)', 'max (ms)'],
      [
        [
          String(times.length),
          percentile(sorted, 50).toFixed(0),
          percentile(sorted, 99).toFixed(0),
          sorted[sorted.length - 1]!.toFixed(0),
        ],
      ],
    );
  } finally {
    for (const n of nodes) {
      await n.stop();
      n.cleanup();
    }
  }
}

await main();
