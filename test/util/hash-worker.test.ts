// A digest computed on a worker thread equals the one computed in place, chunk order included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { HashWorker } from '../../src/util/hash-worker.js';

test('HashWorker gives the same SHA-256 as createHash over many chunks, and differs when a chunk differs', async () => {
  const chunks = Array.from({ length: 40 }, () => randomBytes(512 * 1024 + 7));
  const expected = createHash('sha256');
  const worker = new HashWorker('sha256');
  for (const c of chunks) {
    expected.update(c);
    worker.update(c);
  }
  assert.equal((await worker.digest()).toString('hex'), expected.digest('hex'));

  const other = new HashWorker('sha256');
  for (const c of chunks.slice().reverse()) other.update(c);
  assert.notEqual(
    (await other.digest()).toString('hex'),
    createHash('sha256').update(Buffer.concat(chunks)).digest('hex'),
  );
  const abandoned = new HashWorker('sha256');
  abandoned.update(chunks[0]!);
  await abandoned.abandon();
});
