// bench/ssec: what SSE-C (or, with --sse-s3, SSE-S3) costs. PUT and GET throughput (MiB/s) of plaintext and
// encrypted objects of 1 MiB, 64 MiB and 1 GiB, over plain HTTP and over HTTPS, against a single coffre server
// on loopback.
//
//   npx tsc -p tsconfig.json && node dist/bench/ssec.js [--sse-s3] [sizes in MiB…]
//
// Two servers (same spawn as the tests: own data dir, free ports, log level warn), one with a generated
// certificate. Plaintext and SSE-C measurements alternate, in five rounds whose median is shown (which kind
// goes first alternates too, and writeback is flushed before each), so drift (page cache, disk) hits both alike
// and one disturbed measurement decides nothing. Bodies are generated and discarded as streams, every block
// distinct; objects are deleted after each size so a 1 GiB run does not fill the disk. The client signs with UNSIGNED-PAYLOAD over node:http(s), so it stays cheap; on a
// 2-core machine it still competes with the server for CPU, which is part of what the figures show.
// Bounded by BUDGET_MS: sizes that would start after it are reported as skipped.
// To see where the server's time goes, run it under `node --cpu-prof bin/coffre.js server --config …` (Node
// refuses --cpu-prof in NODE_OPTIONS) and send it the same requests; `--trace-gc` shows the collections.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { startServer, type TestServer } from '../test/helpers/server.js';
import { customerKey, sseCHeaders, startTlsServer } from '../test/security/ssec-helpers.js';
import { mustCli, operatorKey } from '../test/security/sse-s3-helpers.js';
import { rmSync } from 'node:fs';
import { measure, printMarkdownTable, type Figure } from './lib/figures.js';
import { S3Transfer } from './lib/s3-transfer.js';

const MiB = 1024 * 1024;
const BUDGET_MS = 600_000;
/** Measurements of each figure; the table shows their median. */
const ROUNDS = 5;
const BUCKET = 'bench-ssec';
/** SSE-S3 (a keyring sealed to a generated operator key, unlocked) instead of SSE-C. */
const SSE_S3 = process.argv.includes('--sse-s3');
const MODE = SSE_S3 ? 'SSE-S3' : 'SSE-C';

interface Size {
  label: string;
  bytes: number;
  count: number;
}

function sizesFromArgs(): Size[] {
  const args = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  const list = args.length ? args : [1, 64, 1024];
  return list.map((m) => ({
    label: m >= 1024 ? `${m / 1024} GiB` : `${m} MiB`,
    bytes: m * MiB,
    // Enough repetitions for about 64 MiB per measurement at small sizes, one of each at 1 GiB.
    count: Math.max(1, Math.min(48, Math.round(128 / m))),
  }));
}

interface Row {
  size: string;
  transport: string;
  putPlain?: Figure;
  putSse?: Figure;
  getPlain?: Figure;
  getSse?: Figure;
}

let retries = 0;

// A keep-alive connection the server closed just as it was reused fails with "socket hang up" before any
// answer; such a request is sent again once (and counted), anything else is an error.
async function once(op: () => Promise<unknown>): Promise<void> {
  try {
    await op();
  } catch (err) {
    if (!/socket hang up|ECONNRESET/.test(String(err))) throw err;
    retries++;
    await op();
  }
}

/** The median throughput and the median CPU cost, each taken on its own. */
function median(figures: Figure[]): Figure {
  const mid = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { mibps: mid(figures.map((f) => f.mibps)), cpuMsPerMib: mid(figures.map((f) => f.cpuMsPerMib)) };
}

/** A measurement of the server `pid`, each request retried once if its keep-alive connection was closed. */
const measureServer = (pid: number, count: number, bytes: number, op: (i: number) => Promise<unknown>) =>
  measure([pid], count, bytes, (i) => once(() => op(i)));

async function runTransport(
  name: string,
  server: TestServer,
  ca: Buffer | undefined,
  sizes: Size[],
  rows: Row[],
  overBudget: () => boolean,
): Promise<void> {
  const client = new S3Transfer({
    port: server.s3Port,
    ca,
    creds: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: 'us-east-1' },
  });
  const key = customerKey();
  // What an encrypted write sends, and what its read sends (SSE-S3 reads need nothing).
  const sse: Record<string, string> = SSE_S3
    ? { 'x-amz-server-side-encryption': 'AES256' }
    : sseCHeaders(key);
  const sseRead = SSE_S3 ? {} : sse;
  const pid = server.process.pid!;
  try {
    await client.createBucket(BUCKET);
    // Warm up both paths (JIT, TLS session, first block directories).
    await client.put(`/${BUCKET}/warm-p`, MiB);
    await client.put(`/${BUCKET}/warm-s`, MiB, sse);
    await client.get(`/${BUCKET}/warm-p`);
    await client.get(`/${BUCKET}/warm-s`, sseRead);
    for (const size of sizes) {
      const row: Row = { size: size.label, transport: name };
      rows.push(row);
      if (overBudget()) continue;
      const figures: Record<'putPlain' | 'putSse' | 'getPlain' | 'getSse', Figure[]> = {
        putPlain: [],
        putSse: [],
        getPlain: [],
        getSse: [],
      };
      // ROUNDS rounds of the four measurements. Which kind goes first alternates from round to round, so
      // neither always runs right after the other's writes, and written data is flushed before each
      // measurement so none pays for another's writeback. The median of each is reported, so one disturbed
      // measurement does not decide a ratio.
      for (let round = 0; round < ROUNDS; round++) {
        const plainKey = (i: number) => `/${BUCKET}/${size.label}/plain-${i}`;
        const sseKey = (i: number) => `/${BUCKET}/${size.label}/sse-${i}`;
        const put = (objectKey: (i: number) => string, headers?: Record<string, string>) =>
          measureServer(pid, size.count, size.bytes, (i) => client.put(objectKey(i), size.bytes, headers));
        const get = (objectKey: (i: number) => string, headers?: Record<string, string>) =>
          measureServer(pid, size.count, size.bytes, async (i) => {
            const got = await client.get(objectKey(i), headers);
            if (got !== size.bytes) throw new Error(`GET returned ${got} bytes`);
          });
        const steps: [Figure[], () => Promise<Figure>][][] = [
          [
            [figures.putPlain, () => put(plainKey)],
            [figures.putSse, () => put(sseKey, sse)],
          ],
          [
            [figures.getPlain, () => get(plainKey)],
            [figures.getSse, () => get(sseKey, sseRead)],
          ],
        ];
        for (const pair of steps) {
          if (round % 2 === 1) pair.reverse();
          for (const [into, step] of pair) {
            spawnSync('sync');
            into.push(await step());
          }
        }
        for (let i = 0; i < size.count; i++) {
          await client.delete(plainKey(i));
          await client.delete(sseKey(i));
        }
      }
      row.putPlain = median(figures.putPlain);
      row.putSse = median(figures.putSse);
      row.getPlain = median(figures.getPlain);
      row.getSse = median(figures.getSse);
      process.stderr.write(`  ${name} ${size.label} done\n`);
    }
  } finally {
    client.close();
    key.raw.fill(0);
  }
}

const fmt = (f: Figure | undefined) => (f === undefined ? 'skipped' : f.mibps.toFixed(0));
const fmtCpu = (f: Figure | undefined) => (f === undefined ? '' : f.cpuMsPerMib.toFixed(1));
const ratio = (sse: number | undefined, plain: number | undefined) =>
  sse === undefined || plain === undefined ? '' : `${((sse / plain) * 100).toFixed(0)} %`;

function printTable(rows: Row[]): void {
  const header = [
    'size',
    'transport',
    'PUT plain',
    `PUT ${MODE}`,
    'ratio',
    'GET plain',
    `GET ${MODE}`,
    'ratio',
    'cpu PUT p/s',
    'cpu GET p/s',
  ];
  const lines = rows.map((r) => [
    r.size,
    r.transport,
    fmt(r.putPlain),
    fmt(r.putSse),
    ratio(r.putSse?.mibps, r.putPlain?.mibps),
    fmt(r.getPlain),
    fmt(r.getSse),
    ratio(r.getSse?.mibps, r.getPlain?.mibps),
    r.putPlain ? `${fmtCpu(r.putPlain)} / ${fmtCpu(r.putSse)}` : '',
    r.getPlain ? `${fmtCpu(r.getPlain)} / ${fmtCpu(r.getSse)}` : '',
  ]);
  printMarkdownTable(
    [
      `Throughput in MiB/s (one client, sequential requests, loopback); ratio = ${MODE} / plaintext.`,
      `cpu: server CPU time in ms per MiB, plaintext / ${MODE} (steady on a busy machine, unlike MiB/s).`,
    ],
    header,
    lines,
  );
}

async function setUpSseS3(server: TestServer): Promise<void> {
  const operator = await operatorKey('bench');
  try {
    await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  } finally {
    rmSync(operator.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const began = Date.now();
  const overBudget = () => Date.now() - began > BUDGET_MS;
  const sizes = sizesFromArgs();
  const env: Record<string, string> = { COFFRE_LOG_LEVEL: 'warn' };
  const rows: Row[] = [];
  const plain = await startServer({ env });
  if (SSE_S3) await setUpSseS3(plain);
  try {
    await runTransport('http', plain, undefined, sizes, rows, overBudget);
  } finally {
    await plain.stop();
    plain.cleanup();
  }
  const tls = await startTlsServer({ env });
  if (SSE_S3) await setUpSseS3(tls.server);
  try {
    await runTransport('https', tls.server, tls.ca, sizes, rows, overBudget);
  } finally {
    await tls.server.stop();
    tls.server.cleanup();
  }
  rows.sort(
    (a, b) => sizes.findIndex((s) => s.label === a.size) - sizes.findIndex((s) => s.label === b.size),
  );
  printTable(rows);
  console.log(
    `(${((Date.now() - began) / 1000).toFixed(0)} s; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores` +
      `${retries ? `; ${retries} request(s) resent after a closed keep-alive connection` : ''})`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
