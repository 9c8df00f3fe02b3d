// Throughput of node-to-node transport over loopback TCP: raw box-stream through a secure channel, and the
// multiplexed RPC layer carrying a streamed body each way. The receiving node runs in a worker thread so
// sealing and opening use both cores as two real nodes would. Prints MiB/s; no assertions. Runs under the node
// flags of the `coffre` command (bench/lib/node-flags).
//
//   node dist/bench/boxstream.js [MiB for box-stream (default 512)] [MiB for mux (default 256)]
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { toKeys, type KeyPair } from '../src/net/handshake.js';
import { connectSecure, createSecureServer, type SecureChannel } from '../src/net/secure-channel.js';
import { BoxDecoder, BoxEncoder } from '../src/net/box-stream.js';
import { openMux, Priority } from '../src/net/mux.js';
import { sodium } from '../src/net/sodium.js';
import { underCoffreNodeFlags } from './lib/node-flags.js';

const MiB = 1024 * 1024;
const WRITE_SIZE = 256 * 1024;

interface WorkerSetup {
  networkKey: Buffer;
  server: KeyPair;
}

/** A fixed block repeated: the cipher does not care about content, and generating it costs nothing. */
function repeatingSource(total: number): Readable {
  const block = randomBytes(WRITE_SIZE);
  let sent = 0;
  return new Readable({
    highWaterMark: WRITE_SIZE * 4,
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(block.length, total - sent);
      sent += n;
      this.push(n === block.length ? block : block.subarray(0, n));
    },
  });
}

/** Consumes a body, counting its bytes (no buffering: the figure is the transport's, not memcpy's). */
async function countBytes(body: Readable | null): Promise<number> {
  if (!body) return 0;
  let n = 0;
  body.on('data', (c: Buffer) => (n += c.length));
  await once(body, 'end');
  return n;
}

/**
 * Wall-clock and CPU time (all threads of this process) since creation. On a shared machine the wall figure
 * depends on the load; bytes per CPU-second does much less, and bounds what idle cores would reach.
 */
class Stopwatch {
  private readonly wall = performance.now();
  private readonly cpu = process.cpuUsage();
  figures(bytes: number): string {
    const ms = performance.now() - this.wall;
    const used = process.cpuUsage(this.cpu);
    const cpuSeconds = (used.user + used.system) / 1e6;
    return `${rate(bytes, ms)} (${(bytes / MiB / cpuSeconds).toFixed(0)} MiB per CPU-second)`;
  }
}

function rate(bytes: number, ms: number): string {
  return `${((bytes / MiB / ms) * 1000).toFixed(0)} MiB/s`;
}

async function runReceiver(setup: WorkerSetup): Promise<void> {
  const server = createSecureServer({ networkKey: setup.networkKey, identity: setup.server }, (channel) => {
    channel.once('data', (first: Buffer) => {
      const kind = first.subarray(0, 1).toString();
      if (kind === 'R') {
        // Raw box-stream: count bytes until goodbye, then report.
        let n = first.length - 1;
        channel.on('data', (c: Buffer) => (n += c.length));
        channel.on('end', () => {
          channel.end();
          parentPort!.postMessage({ raw: n });
        });
      } else {
        channel.unshift(first);
        void openMux(channel, {
          initiator: false,
          handler: async (req) => {
            if (req.path === 'sink') return { header: { bytes: await countBytes(req.body) } };
            const size = (req.header as { bytes: number }).bytes;
            return { header: {}, body: repeatingSource(size) };
          },
        });
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  parentPort!.postMessage({ port: (server.address() as net.AddressInfo).port });
}

/** The cipher alone (secretbox over 4096-byte messages, one thread): the ceiling the figures below compare to. */
function cipherCeiling(totalMiB: number): void {
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  const tag = Buffer.alloc(16);
  const plain = randomBytes(WRITE_SIZE);
  const out = Buffer.alloc(WRITE_SIZE);
  const watch = new Stopwatch();
  for (let done = 0; done < totalMiB * MiB; done += 4096) {
    const at = done % WRITE_SIZE;
    sodium.crypto_secretbox_detached(
      out.subarray(at, at + 4096),
      tag,
      plain.subarray(at, at + 4096),
      nonce,
      key,
    );
  }
  console.log(`secretbox alone, 4096-byte messages, one thread: ${watch.figures(totalMiB * MiB)}`);
}

async function inProcess(totalMiB: number): Promise<void> {
  // Seal and open in one thread: the cipher cost alone, without TCP.
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  const enc = new BoxEncoder(key, nonce);
  const dec = new BoxDecoder(key, nonce);
  enc.pipe(dec);
  let n = 0;
  dec.on('data', (c: Buffer) => (n += c.length));
  const watch = new Stopwatch();
  const src = repeatingSource(totalMiB * MiB);
  src.pipe(enc);
  await once(dec, 'end');
  console.log(`box-stream seal+open, one thread, no TCP: ${totalMiB} MiB at ${watch.figures(n)}`);
}

async function main(): Promise<void> {
  const boxMiB = Number(process.argv[2] ?? 512);
  const muxMiB = Number(process.argv[3] ?? 256);
  const networkKey = randomBytes(32);
  const server = toKeys(randomBytes(32));
  const client = toKeys(randomBytes(32));
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { networkKey, server } satisfies WorkerSetup,
  });
  const [{ port }] = (await once(worker, 'message')) as [{ port: number }];
  const connect = (): Promise<SecureChannel> =>
    connectSecure('127.0.0.1', port, { networkKey, identity: client, serverPublicKey: server.publicKey });

  console.log(`(${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)})`);
  cipherCeiling(256);
  await inProcess(Math.min(boxMiB, 256));

  // 1. Raw box-stream over TCP.
  {
    const channel = await connect();
    const watch = new Stopwatch();
    const done = once(worker, 'message');
    channel.write('R');
    const src = repeatingSource(boxMiB * MiB);
    src.pipe(channel);
    channel.resume();
    const [{ raw }] = (await done) as [{ raw: number }];
    console.log(`box-stream over loopback TCP: ${(raw / MiB).toFixed(0)} MiB at ${watch.figures(raw)}`);
  }

  // 2. Mux: a streamed request body up, then a streamed response body down.
  {
    const mux = await openMux(await connect(), { initiator: true });
    let watch = new Stopwatch();
    const up = await mux.request('sink', {}, repeatingSource(muxMiB * MiB), { priority: Priority.Bulk });
    const sunk = (up.header as { bytes: number }).bytes;
    console.log(`mux request body (client → server): ${muxMiB} MiB at ${watch.figures(sunk)}`);
    watch = new Stopwatch();
    const down = await mux.request('source', { bytes: muxMiB * MiB }, null, { priority: Priority.Bulk });
    let n = 0;
    down.body!.on('data', (c: Buffer) => (n += c.length));
    await once(down.body!, 'end');
    console.log(`mux response body (server → client): ${muxMiB} MiB at ${watch.figures(n)}`);

    // Small-call latency while a bulk transfer runs.
    const bulk = await mux.request('source', { bytes: 256 * MiB }, null, { priority: Priority.Bulk });
    bulk.body!.resume();
    const lat: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      const r = await mux.request('sink', {}, Buffer.from('x'), { priority: Priority.High });
      void r;
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    console.log(
      `small call during a bulk transfer: median ${lat[25].toFixed(2)} ms, p95 ${lat[47].toFixed(2)} ms`,
    );
    bulk.body!.destroy();
    mux.destroy();
  }
  await worker.terminate();
}

if (isMainThread) {
  underCoffreNodeFlags(import.meta.url);
  await main();
} else {
  await runReceiver(workerData as WorkerSetup);
}
