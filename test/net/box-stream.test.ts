// Box-stream encoder/decoder: round trips, byte-compatibility with the reference pull-box-stream in both
// directions, nonce carry, and every way a stream must be refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BoxDecoder,
  BoxEncoder,
  BoxStreamError,
  MAX_BODY_LENGTH,
  incrementNonce,
} from '../../src/net/box-stream.js';
import { sodium } from '../../src/net/sodium.js';
import { referenceBox, referenceUnbox } from './reference-peer.js';

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function encode(key: Buffer, nonce: Buffer, chunks: Buffer[]): Promise<Buffer> {
  const enc = new BoxEncoder(key, nonce);
  const [wire] = await Promise.all([collect(enc), pipeline(Readable.from(chunks), enc)]);
  return wire;
}

async function decode(key: Buffer, nonce: Buffer, wire: Buffer[], inPlace = false): Promise<Buffer> {
  const dec = new BoxDecoder(key, nonce, { inPlace });
  const [plain] = await Promise.all([collect(dec), pipeline(Readable.from(wire), dec)]);
  return plain;
}

/** Splits a buffer into random-sized pieces, to exercise partial headers and bodies. */
function shred(buf: Buffer, max = 9000): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length;) {
    const n = 1 + Math.floor(Math.random() * max);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

const key = randomBytes(32);
const nonce = randomBytes(24);

test('round trip of varied sizes, shredded on the wire', async () => {
  const chunks = [1, 4095, 4096, 4097, 100_000, 7, 65_536].map((n) => randomBytes(n));
  const wire = await encode(key, nonce, chunks);
  const plain = await decode(key, nonce, shred(wire));
  assert.deepEqual(plain, Buffer.concat(chunks));
});

test('opening in place (as from a socket) gives the same plaintext wherever the chunks are cut', async () => {
  const chunks = [1, 4095, 4096, 4097, 100_000, 7, 65_536].map((n) => randomBytes(n));
  const wire = await encode(key, nonce, chunks);
  const copies = (pieces: Buffer[]) => pieces.map((p) => Buffer.from(p)); // in place overwrites them
  for (let round = 0; round < 20; round++) {
    assert.deepEqual(await decode(key, nonce, copies(shred(wire)), true), Buffer.concat(chunks));
  }
  // Cuts inside the first header and body, around message boundaries, and inside the goodbye (which then
  // straddles two chunks, with or without plaintext before it in the same chunk).
  const ends = wire.length;
  for (const cut of [1, 17, 33, 34, 35, 4129, 4130, 4131, 4200, ends - 40, ends - 34, ends - 20, ends - 1]) {
    const plain = await decode(key, nonce, copies([wire.subarray(0, cut), wire.subarray(cut)]), true);
    assert.deepEqual(plain, Buffer.concat(chunks), `cut at ${cut}`);
  }
  // Three pieces: a chunk that does not even complete the straddling message.
  const three = [wire.subarray(0, 4000), wire.subarray(4000, 4100), wire.subarray(4100)];
  assert.deepEqual(await decode(key, nonce, copies(three), true), Buffer.concat(chunks));
});

test('coffre encoding is what the reference encoder produces, byte for byte', async () => {
  // One write each: both sides cut it at 4096, so the wire bytes must be identical.
  const data = randomBytes(9000);
  assert.deepEqual(await encode(key, nonce, [data]), await referenceBox(key, nonce, [data]));
});

test('the reference decoder reads our stream and we read the reference stream', async () => {
  const data = randomBytes(300_000);
  const ours = await encode(key, nonce, shred(data, 70_000));
  assert.deepEqual(await referenceUnbox(key, nonce, shred(ours)), data);
  const theirs = await referenceBox(key, nonce, shred(data, 70_000));
  assert.deepEqual(await decode(key, nonce, shred(theirs)), data);
});

test('the nonce is a 24-byte big-endian counter with carry', async () => {
  const n = Buffer.alloc(24, 0);
  n[22] = 0x01;
  n[23] = 0xff;
  incrementNonce(n);
  assert.equal(n.subarray(21).toString('hex'), '000200');
  const all = Buffer.alloc(24, 0xff);
  incrementNonce(all);
  assert.ok(all.equals(Buffer.alloc(24)));
  // A stream starting just below a carry boundary still interoperates with the reference.
  const edge = Buffer.alloc(24, 0);
  edge.fill(0xff, 16);
  edge[23] = 0xfd;
  const data = randomBytes(20_000);
  assert.deepEqual(await referenceUnbox(key, edge, [await encode(key, edge, [data])]), data);
});

test('an empty stream is just the goodbye', async () => {
  const wire = await encode(key, nonce, []);
  assert.equal(wire.length, 34);
  assert.equal((await decode(key, nonce, [wire])).length, 0);
});

test('a flipped bit anywhere is refused', async () => {
  const wire = await encode(key, nonce, [randomBytes(10_000)]);
  for (const pos of [0, 20, 40, 4200, wire.length - 1]) {
    const bad = Buffer.from(wire);
    bad[pos] ^= 0x04;
    await assert.rejects(decode(key, nonce, [bad]), BoxStreamError);
  }
});

test('a stream without goodbye is truncated', async () => {
  const wire = await encode(key, nonce, [randomBytes(5000)]);
  await assert.rejects(decode(key, nonce, [wire.subarray(0, wire.length - 34)]), /truncated/);
  await assert.rejects(decode(key, nonce, [wire.subarray(0, 100)]), /truncated/);
});

/** Hand-seals one header (for lengths our encoder would never produce). */
function sealHeader(length: number, tag: Buffer, n: Buffer): Buffer {
  const plain = Buffer.alloc(18);
  plain.writeUInt16BE(length, 0);
  tag.copy(plain, 2);
  const out = Buffer.alloc(34);
  sodium.crypto_secretbox_easy(out, plain, n, key);
  return out;
}

test('a body longer than 4096 bytes is refused before it is read', async () => {
  const header = sealHeader(MAX_BODY_LENGTH + 1, randomBytes(16), nonce);
  await assert.rejects(decode(key, nonce, [header, randomBytes(MAX_BODY_LENGTH + 1)]), /exceeds 4096/);
});

test('a zero-length body that is not the goodbye is refused', async () => {
  await assert.rejects(decode(key, nonce, [sealHeader(0, randomBytes(16), nonce)]), /empty body/);
});

test('data after the goodbye is refused', async () => {
  const wire = await encode(key, nonce, [randomBytes(10)]);
  await assert.rejects(decode(key, nonce, [wire, Buffer.from('x')]), /after goodbye/);
});

test('the decoder respects back-pressure from a slow reader', async () => {
  const data = randomBytes(2 * 1024 * 1024);
  const wire = await encode(key, nonce, [data]);
  const dec = new BoxDecoder(key, nonce, { highWaterMark: 16 * 1024 });
  const source = Readable.from(shred(wire, 65_536));
  source.pipe(dec);
  await new Promise((r) => setTimeout(r, 50));
  // Nobody reads: buffering stops near the high-water marks instead of decoding everything.
  assert.ok(dec.readableLength < 512 * 1024, `buffered ${dec.readableLength}`);
  assert.deepEqual(await collect(dec), data);
});

test('the encoder holds writers back while its output is not read', async () => {
  const enc = new BoxEncoder(key, nonce, { highWaterMark: 64 * 1024 });
  const block = randomBytes(1000);
  let accepted = 0;
  // Batches of small writes go through _writev; stop when the encoder asks us to wait.
  for (let i = 0; i < 10_000; i++) {
    enc.cork();
    for (let j = 0; j < 8; j++) enc.write(block);
    accepted += 8 * block.length;
    process.nextTick(() => enc.uncork());
    if (enc.writableNeedDrain) break;
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(enc.writableNeedDrain, 'the encoder never pushed back');
  assert.ok(accepted < 1024 * 1024, `accepted ${accepted} bytes with nobody reading`);
  const wire = collectStream(enc);
  enc.end();
  const plain = await decode(key, nonce, [await wire]);
  assert.equal(plain.length, accepted);
});

function collectStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  stream.on('data', (c: Buffer) => parts.push(c));
  return new Promise((resolve) => stream.on('end', () => resolve(Buffer.concat(parts))));
}
