// bench/cluster: what a gateway costs. PUT and GET throughput (MiB/s) of 1 MiB and 64 MiB objects, plaintext and
// SSE-C, sent through a gateway node (which forwards metadata and blocks to the storage node over Secret
// Handshake + box-stream) beside the same requests sent straight to the storage node. Both nodes are separate
// processes on loopback; bodies are streamed (generated and discarded piece by piece).
//
//   npx tsc -p tsconfig.json && node dist/bench/cluster.js [sizes in MiB… (default 1 64)]
//   node dist/bench/cluster.js failover [runs (default 5)]
//
// `failover`: three storage nodes in three zones and a gateway, replication_factor = 3. PUT throughput of
// 4 MiB objects through the gateway with every node up, beside the same with one storage node (not the
// metadata node) killed; then, over several runs, the time from `kill -9` of such a node, while a client
// writes 256 KiB objects without a pause, to the first write started after the kill that is acknowledged
// (p50 and p99), and the time the restarted node takes to get the copies it missed.
//
// Alongside MiB/s, the CPU time both processes spend per MiB moved: on a busy 2-core machine wall-clock figures
// depend on what else runs, CPU per MiB much less. Bounded by BUDGET_MS (sizes that would start later are
// reported as skipped). Box-stream transport throughput itself is measured by bench/boxstream.ts.
import { cpus, loadavg } from 'node:os';
import {
  formCluster,
  mustRun,
  newRpcSecret,
  startNode,
  waitFor,
  type ClusterNode,
} from '../test/cluster/cluster-helpers.js';
import { customerKey, sseCHeaders } from '../test/security/ssec-helpers.js';
import { measure, printMarkdownTable, type Figure } from './lib/figures.js';
import { S3Transfer } from './lib/s3-transfer.js';

const MiB = 1024 * 1024;
const BUDGET_MS = 150_000;
const BUCKET = 'bench-cluster';

interface Row {
  size: string;
  path: string;
  putPlain?: Figure;
  putSse?: Figure;
  getPlain?: Figure;
  getSse?: Figure;
}

function sizes(): { label: string; bytes: number; count: number }[] {
  const args = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  return (args.length ? args : [1, 64]).map((m) => ({
    label: `${m} MiB`,
    bytes: m * MiB,
    // About 32 MiB per measurement at small sizes, two objects at 64 MiB.
    count: Math.max(2, Math.min(32, Math.round(32 / m))),
  }));
}

async function runPath(
  name: string,
  target: ClusterNode,
  keyHolder: ClusterNode,
  pids: number[],
  rows: Row[],
  overBudget: () => boolean,
): Promise<void> {
  const client = new S3Transfer({
    port: target.s3Port,
    creds: {
      accessKeyId: keyHolder.accessKeyId,
      secretAccessKey: keyHolder.secretAccessKey,
      region: 'us-east-1',
    },
  });
  const key = customerKey();
  const sse = sseCHeaders(key);
  const prefix = `/${BUCKET}/${name}`;
  try {
    // Warm up both paths (JIT, RPC channel, first block directories).
    await client.put(`${prefix}/warm-p`, MiB);
    await client.put(`${prefix}/warm-s`, MiB, sse);
    await client.get(`${prefix}/warm-p`);
    await client.get(`${prefix}/warm-s`, sse);
    for (const size of sizes()) {
      const row: Row = { size: size.label, path: name };
      rows.push(row);
      if (overBudget()) continue;
      const plainKey = (i: number) => `${prefix}/${size.label}/plain-${i}`;
      const sseKey = (i: number) => `${prefix}/${size.label}/sse-${i}`;
      const check = (got: number) => {
        if (got !== size.bytes) throw new Error(`GET returned ${got} bytes`);
      };
      row.putPlain = await measure(pids, size.count, size.bytes, (i) => client.put(plainKey(i), size.bytes));
      row.putSse = await measure(pids, size.count, size.bytes, (i) => client.put(sseKey(i), size.bytes, sse));
      row.getPlain = await measure(pids, size.count, size.bytes, async (i) =>
        check(await client.get(plainKey(i))),
      );
      row.getSse = await measure(pids, size.count, size.bytes, async (i) =>
        check(await client.get(sseKey(i), sse)),
      );
      for (let i = 0; i < size.count; i++) {
        await client.delete(plainKey(i));
        await client.delete(sseKey(i));
      }
      process.stderr.write(`  ${name} ${size.label} done\n`);
    }
  } finally {
    client.close();
    key.raw.fill(0);
  }
}

const fmt = (f: Figure | undefined) => (f === undefined ? 'skipped' : f.mibps.toFixed(0));
const fmtCpu = (f: Figure | undefined) => (f === undefined ? '-' : f.cpuMsPerMib.toFixed(1));

function printTable(rows: Row[]): void {
  const header = [
    'size',
    'path',
    'PUT plain',
    'PUT SSE-C',
    'GET plain',
    'GET SSE-C',
    'cpu ms/MiB PUT p/s',
    'cpu ms/MiB GET p/s',
  ];
  const lines = rows.map((r) => [
    r.size,
    r.path,
    fmt(r.putPlain),
    fmt(r.putSse),
    fmt(r.getPlain),
    fmt(r.getSse),
    `${fmtCpu(r.putPlain)} / ${fmtCpu(r.putSse)}`,
    `${fmtCpu(r.getPlain)} / ${fmtCpu(r.getSse)}`,
  ]);
  printMarkdownTable(
    [
      'Throughput in MiB/s (one client, sequential requests, loopback).',
      'cpu: CPU time of the gateway and storage processes together, ms per MiB, plaintext / SSE-C.',
    ],
    header,
    lines,
  );
}

async function main(): Promise<void> {
  const began = Date.now();
  const overBudget = () => Date.now() - began > BUDGET_MS;
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const env = { COFFRE_LOG_LEVEL: 'warn' };
  const storage = await startNode({ secretConfig: secret, label: 'storage', env });
  const gateway = await startNode({ secretConfig: secret, label: 'gateway', env });
  const rows: Row[] = [];
  try {
    await formCluster(storage, [
      { node: storage, zone: 'z1' },
      { node: gateway, zone: 'z1', gateway: true },
    ]);
    const setup = new S3Transfer({
      port: storage.s3Port,
      creds: {
        accessKeyId: storage.accessKeyId,
        secretAccessKey: storage.secretAccessKey,
        region: 'us-east-1',
      },
    });
    await setup.createBucket(BUCKET);
    setup.close();
    const pids = [storage.process!.pid!, gateway.process!.pid!];
    await runPath('direct', storage, storage, pids, rows, overBudget);
    await runPath('gateway', gateway, storage, pids, rows, overBudget);
  } finally {
    for (const n of [gateway, storage]) {
      await n.stop();
      n.cleanup();
    }
  }
  rows.sort((a, b) => parseFloat(a.size) - parseFloat(b.size) || a.path.localeCompare(b.path));
  printTable(rows);
  console.log(
    `machine: ${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
}

// ------------------------------------------------------------------ failover

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function resyncDone(nodes: ClusterNode[], id: string): Promise<boolean> {
  for (const n of nodes) {
    const s = JSON.parse(await mustRun(n, ['status', '--json'])) as { resync: { nodes: { node: string }[] } };
    if (s.resync.nodes.some((q) => q.node === id)) return false;
  }
  return true;
}

async function failover(runs: number): Promise<void> {
  const began = Date.now();
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const extraConfig = 'replication_factor = 3';
  const env = { COFFRE_LOG_LEVEL: 'warn', COFFRE_RESYNC_RETRY_MS: '1000' };
  const storage = await Promise.all(
    ['s1', 's2', 's3'].map((label) => startNode({ secretConfig: secret, extraConfig, label, env })),
  );
  const gateway = await startNode({ secretConfig: secret, extraConfig, label: 'gateway', env });
  const all = [...storage, gateway];
  try {
    await formCluster(storage[0]!, [
      ...storage.map((node, i) => ({ node, zone: `z${i + 1}` })),
      { node: gateway, zone: 'z1', gateway: true },
    ]);
    const layout = JSON.parse(await mustRun(gateway, ['layout', 'show', '--json'])) as { metadata: string };
    const ids = await Promise.all(storage.map(async (n) => (await n.id()).split('@')[0]!));
    const meta = storage[ids.indexOf(layout.metadata)]!;
    const others = storage.filter((n) => n !== meta);
    const client = new S3Transfer({
      port: gateway.s3Port,
      creds: { accessKeyId: meta.accessKeyId, secretAccessKey: meta.secretAccessKey, region: 'us-east-1' },
    });
    await client.createBucket(BUCKET);
    await client.put(`/${BUCKET}/warm`, MiB);
    const running = (n: ClusterNode) => n.process?.exitCode === null && n.process.signalCode === null;
    const pids = () => all.filter(running).map((n) => n.process!.pid!);
    const count = 12;
    const upFigure = await measure(pids(), count, 4 * MiB, (i) => client.put(`/${BUCKET}/up-${i}`, 4 * MiB));

    const toFirstAck: number[] = [];
    const toResynced: number[] = [];
    let downFigure: Figure | undefined;
    for (let run = 0; run < runs && Date.now() - began < BUDGET_MS; run++) {
      const victim = others[run % others.length]!;
      const victimId = ids[storage.indexOf(victim)]!;
      let stop = false;
      let killedAt = 0;
      let firstAck = 0;
      let n = 0;
      const writer = (async () => {
        while (!stop) {
          const startedAt = Date.now();
          try {
            await client.put(`/${BUCKET}/run${run}-${n++}`, 256 * 1024);
            if (killedAt > 0 && startedAt >= killedAt && firstAck === 0) firstAck = Date.now();
          } catch {
            // a failed write: the next one is the retry
          }
        }
      })();
      await new Promise((r) => setTimeout(r, 500));
      await victim.kill();
      killedAt = Date.now();
      await waitFor(async () => firstAck > 0, 'a write acknowledged after the kill', 60_000).finally(() => {
        stop = true;
      });
      await writer;
      toFirstAck.push(firstAck - killedAt);
      downFigure ??= await measure(pids(), count, 4 * MiB, (i) =>
        client.put(`/${BUCKET}/down-${i}`, 4 * MiB),
      );
      const restartedAt = Date.now();
      await victim.start();
      await waitFor(
        () => resyncDone([gateway, ...storage], victimId),
        'the restarted node is resynced',
        120_000,
      );
      toResynced.push(Date.now() - restartedAt);
      process.stderr.write(`  run ${run + 1}: first write ${toFirstAck.at(-1)} ms after the kill\n`);
    }
    client.close();
    const sorted = [...toFirstAck].sort((a, b) => a - b);
    const resynced = [...toResynced].sort((a, b) => a - b);
    printMarkdownTable(
      [
        'PUT of 4 MiB objects through a gateway, replication_factor = 3, three storage nodes (one client, sequential).',
        'cpu: CPU time of the running node processes together, ms per MiB.',
      ],
      ['storage nodes', 'PUT MiB/s', 'cpu ms/MiB'],
      [
        ['3 up', upFigure.mibps.toFixed(0), upFigure.cpuMsPerMib.toFixed(1)],
        ['2 up, 1 killed', fmt(downFigure), fmtCpu(downFigure)],
      ],
    );
    console.log('');
    printMarkdownTable(
      [
        `kill -9 of a storage node (not the metadata node) under continuous 256 KiB writes, ${sorted.length} runs.`,
      ],
      ['figure', 'p50 ms', 'p99 ms', 'max ms'],
      [
        ['kill → first acknowledged write', ...[50, 99, 100].map((p) => String(percentile(sorted, p)))],
        ['restart → copies it missed written', ...[50, 99, 100].map((p) => String(percentile(resynced, p)))],
      ],
    );
  } finally {
    for (const n of all) {
      await n.kill();
      n.cleanup();
    }
  }
  console.log(
    `machine: ${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
}

if (process.argv[2] === 'failover') await failover(Number(process.argv[3] ?? 5) || 5);
else await main();
