// bench/metadata: what copying the metadata costs. Small-object PUTs (1 KiB, stored inline in their record, so
// each one is a metadata write and nothing else) through a gateway, to two storage nodes with
// replication_factor = 1 (metadata on one node only) and = 2 (each write waits until the copy holds it):
// sequential ops/s with median and p99 latency, and ops/s with 8 requests in flight. Then how fast a copy left
// too far behind is rebuilt from a snapshot of the tables (table entries per second).
//
//   npx tsc -p tsconfig.json && node dist/bench/metadata.js [objects (default 1500)]
import { cpus, loadavg } from 'node:os';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  startNode,
  waitFor,
  type ClusterNode,
} from '../test/cluster/cluster-helpers.js';
import { printMarkdownTable } from './lib/figures.js';
import { S3Transfer } from './lib/s3-transfer.js';

const COUNT = Math.max(100, Number(process.argv[2] ?? 1500));
const BUCKET = 'bench-metadata';
const LOG_KEEP = 200;

interface Figures {
  rf: number;
  seqOps: number;
  p50: number;
  p99: number;
  parOps: number;
  snapshot?: string;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function withCluster<T>(rf: number, run: (nodes: ClusterNode[]) => Promise<T>): Promise<T> {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const env = {
    COFFRE_LOG_LEVEL: 'warn',
    COFFRE_METADATA_LOG_KEEP: String(LOG_KEEP),
    COFFRE_METADATA_RETRY_MS: '200',
  };
  const nodes = await Promise.all(
    ['s1', 's2', 'gw'].map((label) =>
      startNode({ secretConfig: secret, extraConfig: `replication_factor = ${rf}`, label, env }),
    ),
  );
  try {
    await formCluster(nodes[0]!, [
      { node: nodes[0]!, zone: 'z1' },
      { node: nodes[1]!, zone: 'z2' },
      { node: nodes[2]!, zone: 'z1', gateway: true },
    ]);
    return await run(nodes);
  } finally {
    for (const n of nodes) {
      await n.stop();
      n.cleanup();
    }
  }
}

const metadataPosition = async (n: ClusterNode) =>
  (JSON.parse(await mustRun(n, ['status', '--json'])) as { metadata: { position: { seq: number } } }).metadata
    .position.seq;

async function measureCluster(rf: number): Promise<Figures> {
  return withCluster(rf, async ([s1, s2, gw]) => {
    const layout = JSON.parse(await mustRun(s1!, ['layout', 'show', '--json'])) as { metadata: string };
    const meta = (await s1!.id()).startsWith(layout.metadata) ? s1! : s2!;
    const copy = meta === s1 ? s2! : s1!;
    const client = new S3Transfer({
      port: gw!.s3Port,
      creds: { accessKeyId: meta.accessKeyId, secretAccessKey: meta.secretAccessKey, region: 'us-east-1' },
    });
    try {
      await client.createBucket(BUCKET);
      for (let i = 0; i < 50; i++) await client.put(`/${BUCKET}/warm/${i}`, 1024);
      const latencies: number[] = [];
      const began = process.hrtime.bigint();
      for (let i = 0; i < COUNT; i++) {
        const t = process.hrtime.bigint();
        await client.put(`/${BUCKET}/seq/${i}`, 1024);
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      const seqSeconds = Number(process.hrtime.bigint() - began) / 1e9;
      latencies.sort((a, b) => a - b);
      const parBegan = process.hrtime.bigint();
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < COUNT) await client.put(`/${BUCKET}/par/${next++}`, 1024);
        }),
      );
      const parSeconds = Number(process.hrtime.bigint() - parBegan) / 1e9;
      const figures: Figures = {
        rf,
        seqOps: COUNT / seqSeconds,
        p50: percentile(latencies, 0.5),
        p99: percentile(latencies, 0.99),
        parOps: COUNT / parSeconds,
      };
      if (rf === 2) {
        // The copy misses more writes than the log keeps: it comes back to a snapshot of every table.
        await copy.kill();
        for (let i = 0; i <= LOG_KEEP; i++)
          await client.put(`/${BUCKET}/missed/${i}`, 1024).catch(() => undefined);
        const head = await metadataPosition(meta);
        const restarted = Date.now();
        await copy.start();
        const started = Date.now();
        await waitFor(async () => (await metadataPosition(copy)) >= head, 'the copy is rebuilt', 300_000);
        const seconds = (Date.now() - started) / 1000;
        // Each object is one entry in the objects table; the rest (refs, keys, buckets) are few.
        const entries = 2 * COUNT + 50 + LOG_KEEP + 1;
        figures.snapshot =
          `${entries} objects in ${seconds.toFixed(2)} s after the copy started ` +
          `(${(entries / seconds).toFixed(0)} objects/s; restart took ${((started - restarted) / 1000).toFixed(1)} s)`;
      }
      return figures;
    } finally {
      client.close();
    }
  });
}

async function main(): Promise<void> {
  const began = Date.now();
  const results = [await measureCluster(1), await measureCluster(2)];
  printMarkdownTable(
    [
      `${COUNT} PUTs of 1 KiB objects through a gateway to two storage nodes (loopback, one client).`,
      'rf 1: metadata on one node; rf 2: each write also held by the copy before it is acknowledged.',
    ],
    ['replication_factor', 'sequential ops/s', 'p50 ms', 'p99 ms', '8 in flight ops/s'],
    results.map((r) => [
      String(r.rf),
      r.seqOps.toFixed(0),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      r.parOps.toFixed(0),
    ]),
  );
  for (const r of results) if (r.snapshot) console.log(`copy rebuilt from a snapshot: ${r.snapshot}`);
  console.log(
    `machine: ${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
}

await main();
