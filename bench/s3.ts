// bench/s3: S3 throughput and memory of a single coffre server on loopback.
//
//   npx tsc -p tsconfig.json && node dist/bench/s3.js
//
// Starts a server (same spawn as the tests: its own temporary data dir and free ports), then prints a table:
// PUT and GET throughput (MiB/s) for 4 KiB, 1 MiB, 64 MiB and 1 GiB objects (bodies generated and
// discarded as streams), small-object (4 KiB) PUT/GET operations per second at concurrency 1 and 32, and
// the server's peak RSS (VmHWM, reset before each phase where Linux allows) so that memory can be seen to
// stay flat from 64 MiB to 1 GiB objects. The client signs with UNSIGNED-PAYLOAD over node:http so it is
// not the bottleneck. Takes about a minute or two; bounded by BUDGET_MS.
import { availableParallelism, loadavg } from 'node:os';
import { startServer } from '../test/helpers/server.js';
import { S3Http, GiB, KiB, MiB } from './lib/s3-http.js';
import { currentRss, peakRss, resetPeakRss } from './lib/proc.js';

const BUCKET = 'bench';
const BUDGET_MS = 170_000;
const SMALL_OPS_SECONDS = 3;

interface SizeRow {
  label: string;
  size: number;
  count: number;
  put?: number;
  get?: number;
  peak?: number;
}

const sizes: SizeRow[] = [
  { label: '4 KiB', size: 4 * KiB, count: 500 },
  { label: '1 MiB', size: MiB, count: 64 },
  { label: '64 MiB', size: 64 * MiB, count: 4 },
  { label: '1 GiB', size: GiB, count: 1 },
];

const fmt = (n: number | undefined, digits = 1) => (n === undefined ? '—' : n.toFixed(digits));
const mib = (bytes: number) => bytes / MiB;
const seconds = (startNs: bigint) => Number(process.hrtime.bigint() - startNs) / 1e9;

async function runFor(
  durationS: number,
  concurrency: number,
  op: (n: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  const deadline = Date.now() + durationS * 1000;
  const worker = async () => {
    while (Date.now() < deadline) await op(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return next / seconds(start);
}

async function main(): Promise<void> {
  const began = Date.now();
  const loadBefore = loadavg()[0]!;
  const overBudget = () => Date.now() - began > BUDGET_MS;
  const server = await startServer({ env: { COFFRE_LOG_LEVEL: 'warn' } });
  const pid = server.process.pid!;
  const client = new S3Http(server.s3Port, {
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    region: 'us-east-1',
  });
  try {
    await client.createBucket(BUCKET);
    const idleRss = currentRss(pid);
    const canReset = resetPeakRss(pid);

    for (const row of sizes) {
      if (overBudget()) break;
      resetPeakRss(pid);
      let start = process.hrtime.bigint();
      for (let i = 0; i < row.count; i++) await client.put(`/${BUCKET}/${row.label}/${i}`, row.size);
      row.put = mib(row.size * row.count) / seconds(start);
      start = process.hrtime.bigint();
      let got = 0;
      for (let i = 0; i < row.count; i++) got += await client.get(`/${BUCKET}/${row.label}/${i}`);
      if (got !== row.size * row.count) throw new Error(`${row.label}: read ${got} bytes`);
      row.get = mib(got) / seconds(start);
      row.peak = peakRss(pid);
      process.stderr.write(`${row.label}: PUT ${fmt(row.put)} MiB/s, GET ${fmt(row.get)} MiB/s\n`);
    }

    const ops: { label: string; value?: number }[] = [];
    for (const concurrency of [1, 32]) {
      if (overBudget()) break;
      const prefix = `/${BUCKET}/ops-c${concurrency}/`;
      const put = await runFor(SMALL_OPS_SECONDS, concurrency, (n) => client.put(prefix + n, 4 * KiB));
      const written = Math.floor(put * SMALL_OPS_SECONDS);
      const get = await runFor(SMALL_OPS_SECONDS, concurrency, (n) => client.get(prefix + (n % written)));
      ops.push({ label: `4 KiB PUT, concurrency ${concurrency}`, value: put });
      ops.push({ label: `4 KiB GET, concurrency ${concurrency}`, value: get });
    }
    const overallPeak = peakRss(pid);

    const out: string[] = [];
    out.push(`coffre S3 benchmark — single node on loopback, ${new Date().toISOString()}`);
    out.push('');
    out.push('| object size | objects | PUT MiB/s | GET MiB/s | server peak RSS in phase (MiB) |');
    out.push('|---|---:|---:|---:|---:|');
    for (const r of sizes) {
      out.push(
        `| ${r.label} | ${r.count} | ${fmt(r.put)} | ${fmt(r.get)} | ${r.peak === undefined ? '—' : fmt(mib(r.peak), 0)} |`,
      );
    }
    out.push('');
    out.push('| small objects | ops/s |');
    out.push('|---|---:|');
    for (const o of ops) out.push(`| ${o.label} | ${fmt(o.value, 0)} |`);
    out.push('');
    const p64 = sizes[2]!.peak;
    const p1g = sizes[3]!.peak;
    out.push(
      `server RSS when idle: ${fmt(mib(idleRss), 0)} MiB; peak over the whole run: ${fmt(mib(overallPeak), 0)} MiB`,
    );
    if (p64 !== undefined && p1g !== undefined) {
      out.push(
        `peak RSS 64 MiB objects → 1 GiB objects: ${fmt(mib(p64), 0)} → ${fmt(mib(p1g), 0)} MiB ` +
          `(${p1g - p64 >= 0 ? '+' : ''}${fmt(mib(p1g - p64), 0)} MiB for 16× the object size)`,
      );
    }
    if (!canReset) out.push('(peak RSS could not be reset between phases: figures are cumulative)');
    // Other work on the machine shares its cores and disk with client and server: say how busy it was.
    out.push(
      `total time ${fmt((Date.now() - began) / 1000, 0)} s; 1-minute load average ${fmt(loadBefore)} before, ` +
        `${fmt(loadavg()[0])} after (machine has ${availableParallelism()} cores)`,
    );
    console.log(out.join('\n'));
  } finally {
    client.close();
    await server.kill();
    server.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
