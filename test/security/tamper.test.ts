// Tampering with stored data never yields wrong bytes: after an upload of a multi-block object (SSE-C, and
// plaintext), a flipped byte in a block file, a truncated block file, a missing one, and two block files with
// swapped contents each make GET fail — an error status or a cut connection — and whatever bytes did arrive
// are the original's.
// For the plaintext object the block hash check catches those; for the SSE-C object, whose blocks are read
// without that check, the AES-GCM tag of every chunk does. The SSE-C object's metadata record is also edited to
// list its (intact) blocks out of order, which the object's authenticated manifest refuses before any byte is
// read (and the chunk nonces would catch; test/security/truncation.test.ts edits records further).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { open } from 'lmdb';
import { signer } from '../api/s3/sigv4-client.js';
import { startServer, type TestServer } from '../helpers/server.js';
import type { ObjectRecord } from '../../src/model/types.js';
import {
  blockFiles,
  customerKey,
  signedFetch,
  sseCHeaders,
  type CustomerKey,
  type FetchOutcome,
} from './ssec-helpers.js';

const B = 'tamper';
const MiB = 1024 * 1024;
let server: TestServer;

before(async () => {
  server = await startServer();
  const made = await signedFetch(server, 'PUT', `/${B}`);
  assert.equal(made.status, 200);
});

after(async () => {
  await server?.stop();
  server?.cleanup();
});

const dataDir = () => join(server.dir, 'data');

/** PUTs `data` (with the key's headers if any) and returns the block files that appeared. */
async function putTracked(name: string, data: Buffer, key?: CustomerKey): Promise<string[]> {
  const before = new Set(blockFiles(dataDir()));
  const host = `127.0.0.1:${server.s3Port}`;
  const headers: Record<string, string> = {
    host,
    'x-amz-content-sha256': createHash('sha256').update(data).digest('hex'),
    'content-length': String(data.length),
    ...(key ? sseCHeaders(key) : {}),
  };
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path: `/${B}/${name}`,
    query: {},
    headers,
  });
  const send: Record<string, string> = { ...signed.headers };
  delete send.host;
  delete send['content-length'];
  const res = await fetch(`http://${host}/${B}/${name}`, { method: 'PUT', headers: send, body: data });
  assert.equal(res.status, 200, await res.text());
  const added = blockFiles(dataDir()).filter((p) => !before.has(p));
  assert.ok(added.length >= 3, `expected several blocks, got ${added.length}`);
  return added;
}

const get = (name: string, key?: CustomerKey, range?: string): Promise<FetchOutcome> =>
  signedFetch(server, 'GET', `/${B}/${name}`, {
    ...(key ? sseCHeaders(key) : {}),
    ...(range ? { range } : {}),
  });

/** The GET must not succeed, and any bytes it delivered must be the original's, from `start`. */
function assertRefused(what: string, got: FetchOutcome, original: Buffer, start = 0): void {
  const delivered = got.status === 200 || got.status === 206;
  if (delivered) {
    assert.ok(
      got.body.equals(original.subarray(start, start + got.body.length)),
      `${what}: ${got.body.length} delivered bytes differ from the original`,
    );
  }
  assert.ok(
    !delivered || got.error !== undefined,
    `${what}: answered ${got.status} with ${got.body.length} bytes and no error`,
  );
}

async function assertIntact(name: string, data: Buffer, key?: CustomerKey): Promise<void> {
  const got = await get(name, key);
  assert.equal(got.status, 200);
  assert.equal(got.error, undefined);
  assert.ok(got.body.equals(data), 'restored object reads back whole');
}

async function tamperScenario(name: string, key?: CustomerKey): Promise<void> {
  const data = randomBytes(3 * MiB + 500_000);
  const blocks = await putTracked(name, data, key);
  await assertIntact(name, data, key);
  const [a, b] = [blocks[1]!, blocks[2]!];
  const saved = new Map(blocks.map((p) => [p, readFileSync(p)]));
  const restore = () => {
    for (const [p, bytes] of saved) writeFileSync(p, bytes);
  };

  // One flipped byte in the middle of a block.
  const flipped = Buffer.from(saved.get(a)!);
  flipped[flipped.length >> 1]! ^= 0x01;
  writeFileSync(a, flipped);
  assertRefused('flipped byte', await get(name, key), data);
  // A range inside another block still reads; one over the damaged block does not.
  for (const range of ['bytes=0-99', `bytes=${MiB - 50}-${3 * MiB}`]) {
    const start = Number(/=(\d+)/.exec(range)![1]);
    const got = await get(name, key, range);
    if (got.status === 206 && !got.error)
      assert.ok(got.body.equals(data.subarray(start, start + got.body.length)));
  }
  restore();
  await assertIntact(name, data, key);

  // A truncated block.
  truncateSync(a, saved.get(a)!.length - 1000);
  assertRefused('truncated block', await get(name, key), data);
  truncateSync(a, 10);
  assertRefused('block cut to 10 bytes', await get(name, key), data);
  restore();
  await assertIntact(name, data, key);

  // A block file gone (an SSE-C read finds it on the worker that decrypts, a plaintext read on the block worker).
  unlinkSync(a);
  assertRefused('missing block', await get(name, key), data);
  const statuses: number[] = [];
  for (let at = 0; at < data.length; at += MiB)
    statuses.push((await get(name, key, `bytes=${at}-${at + 99}`)).status);
  assert.ok(statuses.includes(500), `a range inside the missing block is a server error (got ${statuses})`);
  assert.ok(statuses.includes(206), `ranges in other blocks still read (got ${statuses})`);
  restore();
  await assertIntact(name, data, key);

  // Two blocks' contents swapped.
  writeFileSync(a, saved.get(b)!);
  writeFileSync(b, saved.get(a)!);
  assertRefused('swapped blocks', await get(name, key), data);
  restore();
  await assertIntact(name, data, key);
}

test('SSE-C object: flipped byte, truncated block, swapped blocks → GET fails, never wrong bytes', async () => {
  await tamperScenario('encrypted.bin', customerKey());
});

test('plaintext object: the block hash check catches the same tampering', async () => {
  await tamperScenario('plain.bin');
});

/** Rewrites a stored object record with the server stopped, then starts the server again on the same data. */
async function editRecord(name: string, edit: (r: ObjectRecord) => void): Promise<void> {
  await server.stop();
  const root = open({ path: join(server.dir, 'meta'), compression: false, maxDbs: 32 });
  try {
    const objects = root.openDB<ObjectRecord, (string | number)[]>({
      name: 'objects',
      keyEncoding: 'ordered-binary',
    });
    let found = false;
    for (const { key, value } of objects.getRange({})) {
      if (value.key !== name) continue;
      edit(value);
      await objects.put(key, value);
      found = true;
    }
    assert.ok(found, `record of ${name} found in the metadata store`);
  } finally {
    await root.close();
  }
  server = await startServer({ dir: server.dir });
}

test('SSE-C object whose record lists its intact blocks out of order: refused', async () => {
  const key = customerKey();
  const data = randomBytes(4 * MiB + 1234);
  await putTracked('reordered.bin', data, key);
  await assertIntact('reordered.bin', data, key);
  let original: ObjectRecord['segments'][number]['blocks'] = [];
  await editRecord('reordered.bin', (r) => {
    const blocks = r.segments[0]!.blocks;
    original = blocks.map((b) => ({ ...b }));
    assert.equal(blocks[1]!.size, blocks[2]!.size, 'two full blocks to swap');
    [blocks[1], blocks[2]] = [blocks[2]!, blocks[1]!];
  });
  assertRefused('reordered blocks', await get('reordered.bin', key), data);
  // A range inside the moved bytes only: every block would pass its hash check.
  const start = original[0]!.size + 1000;
  assertRefused(
    'range over a moved block',
    await get('reordered.bin', key, `bytes=${start}-${start + 99}`),
    data,
    start,
  );
  await editRecord('reordered.bin', (r) => {
    r.segments[0]!.blocks = original;
  });
  await assertIntact('reordered.bin', data, key);
});
