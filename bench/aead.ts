// Throughput of the chunked AEAD stream (src/crypto/aead-stream.ts): encrypt and decrypt MiB/s on one core for
// 1 MiB, 64 MiB and 1 GiB of generated plaintext. Data is produced piece by piece (never held whole) and the
// output is counted and dropped, so the figures are the stream's own cost plus Node's stream plumbing.
// Run: npx tsc -p tsconfig.json && node dist/bench/aead.js [sizes in MiB…]

import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecryptStream, createEncryptStream, encryptedSize } from '../src/crypto/aead-stream.js';

const MiB = 1024 * 1024;
const PIECE = 64 * 1024; // the read size of fs streams and a typical socket read

/** Yields `total` bytes as PIECE-sized views of one random buffer (content does not affect AES-GCM speed). */
function generated(total: number, pieceSize = PIECE): Readable {
  const pool = randomBytes(pieceSize);
  let left = total;
  return new Readable({
    read() {
      if (left === 0) return this.push(null);
      const n = Math.min(pieceSize, left);
      left -= n;
      this.push(pool.subarray(0, n));
    },
  });
}

function counter(): Writable & { bytes: number } {
  const w = new Writable({
    write(chunk: Buffer, _enc, done) {
      w.bytes += chunk.length;
      done();
    },
    writev(chunks, done) {
      for (const c of chunks) w.bytes += (c.chunk as Buffer).length;
      done();
    },
  }) as Writable & { bytes: number };
  w.bytes = 0;
  return w;
}

async function timed(f: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** One real sealed stream of `plainSize` bytes, kept in memory (at most 64 MiB) to be replayed. */
async function sealedSample(key: Buffer, plainSize: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(generated(plainSize), createEncryptStream(key), async (src: AsyncIterable<Buffer>) => {
    for await (const b of src) parts.push(b);
  });
  return Buffer.concat(parts);
}

/** Small objects are measured over several streams (at least this much data) so the figure is stable. */
const MIN_MEASURED = 256 * MiB;

async function bench(sizeMiB: number, report = true): Promise<void> {
  const key = randomBytes(32);
  const size = sizeMiB * MiB;
  const streams = Math.max(1, Math.ceil(MIN_MEASURED / size));
  let encSeconds = 0;
  for (let i = 0; i < streams; i++) {
    const enc = counter();
    encSeconds += await timed(() => pipeline(generated(size), createEncryptStream(key), enc));
    if (enc.bytes !== encryptedSize(size)) throw new Error('encrypt produced the wrong size');
  }

  // Decrypting needs real ciphertext. Above 64 MiB, one sealed 64 MiB stream is decrypted repeatedly (each pass
  // a complete, verified stream) so that 1 GiB is measured without holding 1 GiB of ciphertext.
  const sampleSize = Math.min(size, 64 * MiB);
  const sample = await sealedSample(key, sampleSize);
  const passes = (streams * size) / sampleSize;
  let decrypted = 0;
  let decSeconds = 0;
  for (let i = 0; i < passes; i++) {
    const dec = counter();
    decSeconds += await timed(() => pipeline(generatedFrom(sample), createDecryptStream(key), dec));
    decrypted += dec.bytes;
  }
  if (decrypted !== streams * size) throw new Error('decrypt produced the wrong size');
  if (!report) return;
  const rate = (s: number) => ((streams * size) / MiB / s).toFixed(0).padStart(6);
  const label = `${String(sizeMiB).padStart(5)} MiB objects (${streams} stream${streams > 1 ? 's' : ''})`;
  console.log(`${label.padEnd(30)} encrypt ${rate(encSeconds)} MiB/s   decrypt ${rate(decSeconds)} MiB/s`);
}

/** Replays a buffer as PIECE-sized views, like a block store read would. */
function generatedFrom(buf: Buffer): Readable {
  let off = 0;
  return new Readable({
    read() {
      if (off >= buf.length) return this.push(null);
      const end = Math.min(off + PIECE, buf.length);
      this.push(buf.subarray(off, end));
      off = end;
    },
  });
}

const sizes = process.argv.slice(2).map(Number);
console.log(`aead-stream (AES-256-GCM, 64 KiB chunks), node ${process.version}, ${PIECE / 1024} KiB writes`);
await bench(16, false); // warm-up: let the JIT settle before anything is reported
for (const s of sizes.length > 0 ? sizes : [1, 64, 1024]) await bench(s);
