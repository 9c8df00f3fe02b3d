// bench/vs-ceph: coffre against Ceph RGW, with the same AWS SDK v3 client, on this machine.
//
//   npx tsc -p tsconfig.json && node dist/bench/vs-ceph.js [--rounds N] [--memstore] [--gateway] [--profile DIR]
//
// Starts a single-node Ceph RGW with the tests' helper (test/helpers/ceph.ts: one OSD on bluestore on a sparse
// file in the temporary directory, so that both stores write to the same disk; --memstore for an OSD in memory),
// a coffre node (as the tests start it, at its default log level: what a user runs), and a null server that
// answers every request at once (bench/lib/null-s3.ts), which gives the client's own floor. Then, in rounds,
// every figure is measured against each of the three in turn, the order rotating from round to round and the
// page cache's dirty data flushed before each, so drift hits all alike; the table shows each figure's median.
//
// With --gateway, a coffre gateway ([backend] type = "s3", test/backend/gateway-helpers.ts) in front of that same
// Ceph RGW is measured beside Ceph direct (issue 13's goal: 80 % of Ceph direct for 256 MiB, 70 % for 4 KiB), in
// place of the local coffre node (--targets null,coffre,gateway,Ceph picks any set). The gateway's CPU column is
// the gateway process's alone (what coffre adds); Ceph's own CPU for those requests is in the same run's Ceph
// column. --profile DIR writes the gateway's V8 CPU profile (node --cpu-prof) into DIR when it stops.
//
// Figures: 256 MiB PUT and GET (MiB/s, one object), 4 KiB PUT and GET one request at a time and 32 at once
// (ops/s over SMALL_SECONDS each). Server time is a sequential request's latency minus the null server's: what
// the store itself adds to each request. Server CPU is the CPU the store's processes used per request (per MiB
// for 256 MiB), which holds up better than wall-clock figures on a busy machine. Bounded by BUDGET_MS: rounds
// that would start after it are not run. If Ceph cannot be started, the reason is printed and the other two
// columns are still measured.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startGateway, type Gateway } from '../test/backend/gateway-helpers.js';
import { CephUnavailable, startCeph, type Ceph } from '../test/helpers/ceph.js';
import { startServer, type TestServer } from '../test/helpers/server.js';
import { PIECE, nextPiece } from './lib/body.js';
import { cpuSeconds } from './lib/cpu-time.js';
import { printMarkdownTable } from './lib/figures.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BIG = 256 * MiB;
const SMALL = 4 * KiB;
const SMALL_SECONDS = 3;
const CONCURRENCY = 32;
const BUDGET_MS = 540_000;
const BUCKET = 'bench-vs-ceph';

const argValue = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const ROUNDS = Number(argValue('--rounds') ?? 3);
const TARGETS = (
  argValue('--targets') ?? (process.argv.includes('--gateway') ? 'null,gateway,Ceph' : 'null,coffre,Ceph')
).split(',');
const PROFILE_DIR = argValue('--profile');
/** Ceph's bucket the gateway stores its objects in. */
const GATEWAY_STORE = 'coffre-gateway-store';

interface Target {
  name: string;
  client: S3Client;
  pids: () => number[];
  /** Keys the last 4 KiB PUT of each kind wrote, for the GET that follows it. */
  written: Map<string, number>;
}

interface Measured {
  value: number; // MiB/s or ops/s
  cpuMs: number; // server CPU per op (per MiB for big objects)
}

interface Figure {
  label: string;
  unit: 'MiB/s' | 'ops/s';
  sequential: boolean;
  run(t: Target, round: number): Promise<{ value: number; ops: number }>;
}

function client(endpoint: string, accessKeyId: string, secretAccessKey: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    // Ceph 16.2 knows neither the flexible checksums nor their trailers: the client sends and checks none, on all.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { httpAgent: new http.Agent({ keepAlive: true, maxSockets: 2 * CONCURRENCY }) },
  });
}

function bigBody(): Readable {
  let left = BIG;
  return new Readable({
    read() {
      const n = Math.min(PIECE, left);
      left -= n;
      this.push(n > 0 ? nextPiece(n) : null);
    },
  });
}

async function drain(body: unknown): Promise<number> {
  let n = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) n += chunk.length;
  return n;
}

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

async function put(t: Target, key: string, body: Buffer | Readable, length: number): Promise<void> {
  await t.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentLength: length }));
}

async function get(t: Target, key: string, length: number): Promise<void> {
  const res = await t.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const got = await drain(res.Body);
  if (got !== length) throw new Error(`${t.name}: GET ${key} returned ${got} bytes, not ${length}`);
}

/** Runs `op(n)` from `workers` loops for `durationS`; ops/s and the count done. */
async function runFor(workers: number, durationS: number, op: (n: number) => Promise<void>) {
  let next = 0;
  const start = process.hrtime.bigint();
  const deadline = Date.now() + durationS * 1000;
  const loop = async () => {
    while (Date.now() < deadline) await op(next++);
  };
  await Promise.all(Array.from({ length: workers }, loop));
  return { value: next / seconds(start), ops: next };
}

const smallKey = (kind: string, round: number, n: number) => `${SMALL}/${kind}-r${round}/${n}`;

function smallPut(kind: string, workers: number): Figure['run'] {
  return async (t, round) => {
    const r = await runFor(workers, SMALL_SECONDS, (n) =>
      put(t, smallKey(kind, round, n), nextPiece(SMALL), SMALL),
    );
    t.written.set(kind, r.ops);
    return r;
  };
}

function smallGet(kind: string, workers: number): Figure['run'] {
  return (t, round) => {
    const written = t.written.get(kind) ?? 0;
    if (written === 0) throw new Error(`${t.name}: no ${kind} objects to read`);
    return runFor(workers, SMALL_SECONDS, (n) => get(t, smallKey(kind, round, n % written), SMALL));
  };
}

const figures: Figure[] = [
  {
    label: '256 MiB PUT',
    unit: 'MiB/s',
    sequential: true,
    async run(t, round) {
      const start = process.hrtime.bigint();
      await put(t, `${BIG}/r${round}`, bigBody(), BIG);
      return { value: BIG / MiB / seconds(start), ops: BIG / MiB };
    },
  },
  {
    label: '256 MiB GET',
    unit: 'MiB/s',
    sequential: true,
    async run(t, round) {
      const start = process.hrtime.bigint();
      await get(t, `${BIG}/r${round}`, BIG);
      return { value: BIG / MiB / seconds(start), ops: BIG / MiB };
    },
  },
  { label: '4 KiB PUT', unit: 'ops/s', sequential: true, run: smallPut('seq', 1) },
  { label: '4 KiB GET', unit: 'ops/s', sequential: true, run: smallGet('seq', 1) },
  { label: `4 KiB PUT ×${CONCURRENCY}`, unit: 'ops/s', sequential: false, run: smallPut('par', CONCURRENCY) },
  { label: `4 KiB GET ×${CONCURRENCY}`, unit: 'ops/s', sequential: false, run: smallGet('par', CONCURRENCY) },
];

async function measure(f: Figure, t: Target, round: number): Promise<Measured> {
  // Dirty pages another store left behind are written back now, not during this measurement.
  spawnSync('sync');
  const cpu = () => t.pids().reduce((s, p) => s + cpuSeconds(p), 0);
  const cpu0 = cpu();
  const r = await f.run(t, round);
  return { value: r.value, cpuMs: ((cpu() - cpu0) * 1000) / r.ops };
}

function startNullServer(): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'lib', 'null-s3.js')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve({ port: Number(m[1]), child });
    });
    child.once('exit', (code) => reject(new Error(`null server exited with ${code}`)));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const began = Date.now();
  const loadBefore = loadavg()[0]!;
  let ceph: Ceph | undefined;
  let cephMissing: string | undefined;
  try {
    ceph = await startCeph({ objectstore: process.argv.includes('--memstore') ? 'memstore' : 'bluestore' });
  } catch (err) {
    if (!(err instanceof CephUnavailable)) throw err;
    cephMissing = err.message;
    process.stderr.write(`Ceph RGW unavailable, measuring without it: ${err.message}\n`);
  }
  let coffre: TestServer | undefined;
  let gateway: Gateway | undefined;
  let nul: { port: number; child: ChildProcess } | undefined;
  const targets: Target[] = [];
  try {
    // A store measured: signed with its credentials, its CPU read from `pids`.
    const target = (
      name: string,
      at: { endpoint: string; accessKeyId: string; secretAccessKey: string },
      pids: number[],
    ): Target => ({
      name,
      client: client(at.endpoint, at.accessKeyId, at.secretAccessKey),
      pids: () => pids,
      written: new Map(),
    });
    if (TARGETS.includes('null')) {
      nul = await startNullServer();
      const at = { endpoint: `http://127.0.0.1:${nul.port}`, accessKeyId: 'NULL', secretAccessKey: 'null' };
      targets.push(target('null', at, [nul.child.pid!]));
    }
    if (TARGETS.includes('coffre')) {
      coffre = await startServer();
      targets.push(target('coffre', coffre, [coffre.process.pid!]));
    }
    if (ceph && TARGETS.includes('gateway')) {
      const direct = ceph.client();
      await direct.send(new CreateBucketCommand({ Bucket: GATEWAY_STORE }));
      direct.destroy();
      const profile = PROFILE_DIR ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] } : {};
      gateway = await startGateway({ ...ceph, bucket: GATEWAY_STORE }, { prefix: 'bench/', server: profile });
      targets.push(target('gateway', gateway.server, [gateway.server.process.pid!]));
    }
    if (ceph && TARGETS.includes('Ceph'))
      targets.push(target('Ceph', ceph, [ceph.pids.mon, ceph.pids.osd, ceph.pids.rgw]));
    for (const t of targets) {
      await t.client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      // Warm up: connections, JIT, first directories.
      for (let i = 0; i < 50; i++) await put(t, smallKey('warm', 0, i), nextPiece(SMALL), SMALL);
      for (let i = 0; i < 50; i++) await get(t, smallKey('warm', 0, i), SMALL);
    }

    const results = new Map<string, Map<string, Measured[]>>(
      figures.map((f) => [f.label, new Map(targets.map((t) => [t.name, []]))]),
    );
    let rounds = 0;
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0 && Date.now() - began > BUDGET_MS) break;
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      for (const f of figures) {
        for (const t of order)
          results
            .get(f.label)!
            .get(t.name)!
            .push(await measure(f, t, round));
      }
      rounds++;
      process.stderr.write(`round ${rounds} done (${((Date.now() - began) / 1000).toFixed(0)} s)\n`);
    }

    const med = (f: Figure, name: string, pick: (m: Measured) => number) => {
      const xs = results.get(f.label)!.get(name);
      return xs && xs.length > 0 ? median(xs.map(pick)) : undefined;
    };
    const fmt = (n: number | undefined, digits = 0) => (n === undefined ? '—' : n.toFixed(digits));
    const names = targets.map((t) => t.name);
    const stores = names.filter((n) => n !== 'null');
    const ratios = stores.filter((n) => n !== 'Ceph' && names.includes('Ceph'));
    const header = [
      'figure',
      ...names,
      ...ratios.map((n) => `${n}/Ceph`),
      ...stores.map((n) => `server ms ${n}`),
      ...stores.map((n) => `CPU ${n}`),
    ];
    const rows = figures.map((f) => {
      const v = (name: string) => med(f, name, (m) => m.value);
      const n = v('null');
      // Latency per request (per 256 MiB object) minus the null server's.
      const per = f.unit === 'MiB/s' ? BIG / MiB : 1;
      const serverMs = (x: number | undefined) =>
        f.sequential && x !== undefined && n !== undefined ? fmt((per / x - per / n) * 1000, 2) : '';
      const ratio = (name: string) => {
        const [c, k] = [v(name), v('Ceph')];
        return c !== undefined && k !== undefined ? `${(c / k).toFixed(2)}×` : '—';
      };
      return [
        `${f.label} (${f.unit})`,
        ...names.map((name) => fmt(v(name))),
        ...ratios.map(ratio),
        ...stores.map((name) => serverMs(v(name))),
        ...stores.map((name) =>
          fmt(
            med(f, name, (m) => m.cpuMs),
            2,
          ),
        ),
      ];
    });
    printMarkdownTable(
      [
        `${stores.join(' vs ')}: Ceph RGW ${ceph ? `(${ceph.objectstore})` : '(not measured)'} — AWS SDK v3, loopback, ` +
          `median of ${rounds} interleaved round(s), ${new Date().toISOString()}`,
        "server ms: one sequential request's latency (one 256 MiB object's) minus the null server's; " +
          "CPU: the store's processes' CPU ms per request (per MiB for 256 MiB); the gateway's is its own process's.",
      ],
      header,
      rows,
    );
    if (cephMissing) console.log(`Ceph RGW not measured: ${cephMissing}`);
    console.log(
      `(${((Date.now() - began) / 1000).toFixed(0)} s; 1-minute load average ${loadBefore.toFixed(1)} before, ` +
        `${loadavg()[0]!.toFixed(1)} after, on ${availableParallelism()} cores)`,
    );
  } finally {
    for (const t of targets) t.client.destroy();
    nul?.child.kill('SIGKILL');
    // Stopped (not killed) so that a profiled gateway writes its profile.
    await gateway?.stop();
    if (coffre) {
      await coffre.kill();
      coffre.cleanup();
    }
    await ceph?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
