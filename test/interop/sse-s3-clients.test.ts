// Interop: SSE-S3 asked for by rclone (`server_side_encryption = AES256`) and s3cmd (`--server-side-encryption`).
// rclone checks every upload against the ETag (the MD5 of the plaintext for SSE-S3, as in S3) and `rclone check`
// compares hashes, so a wrong ETag fails here; the SDK confirms the objects are stored with SSE-S3.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { runCommand, startServer } from '../helpers/server.js';
import { requireTools, writeRcloneConfig, writeS3cmdConfig } from '../helpers/tools.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';

const MiB = 1024 * 1024;

test('rclone and s3cmd store and read SSE-S3 objects', async (t) => {
  if (!requireTools(t, 'rclone', 's3cmd')) return;
  const server = await startServer();
  const operator = await operatorKey('carol');
  const work = mkdtempSync(join(tmpdir(), 'coffre-sse-s3-clients-'));
  const s3 = server.client();
  t.after(async () => {
    s3.destroy();
    await server.stop();
    server.cleanup();
    rmSync(work, { recursive: true, force: true });
    rmSync(operator.dir, { recursive: true, force: true });
  });
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  const sseOf = async (bucket: string, key: string) =>
    (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ServerSideEncryption;

  // rclone: a tree with a multipart file, checked by hash both ways.
  const rcloneConfig = join(work, 'rclone.conf');
  writeRcloneConfig(rcloneConfig, server, [
    'server_side_encryption = AES256',
    'upload_cutoff = 8M',
    'chunk_size = 5M',
  ]);
  const rclone = async (...args: string[]) => {
    // The machine-wide AWS_CA_BUNDLE would make rclone's AWS SDK replace its transport (and fail).
    const r = await runCommand('rclone', ['--config', rcloneConfig, '--retries', '1', ...args], {
      AWS_CA_BUNDLE: '',
    });
    assert.equal(r.code, 0, `rclone ${args.join(' ')}:\n${r.stderr}`);
    return r;
  };
  const src = join(work, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  const contents: Record<string, Buffer> = {
    'a.txt': Buffer.from('sealed by the operators\n'),
    'sub/b.bin': randomBytes(300_000),
    'sub/big.bin': randomBytes(13 * MiB + 5),
  };
  for (const [name, data] of Object.entries(contents)) writeFileSync(join(src, name), data);
  await rclone('mkdir', 'coffre:sse-s3-rclone');
  await rclone('copy', src, 'coffre:sse-s3-rclone/tree');
  await rclone('check', src, 'coffre:sse-s3-rclone/tree');
  await rclone('check', '--download', src, 'coffre:sse-s3-rclone/tree');
  const down = join(work, 'down');
  await rclone('copy', 'coffre:sse-s3-rclone/tree', down);
  for (const [name, data] of Object.entries(contents)) {
    assert.deepEqual(readFileSync(join(down, name)), data, name);
    assert.equal(await sseOf('sse-s3-rclone', `tree/${name}`), 'AES256', name);
  }

  // s3cmd: put with --server-side-encryption (single and multipart), get back.
  const s3cfg = join(work, 's3cfg');
  writeS3cmdConfig(s3cfg, server);
  const s3cmd = async (...args: string[]) => {
    const r = await runCommand('s3cmd', ['-c', s3cfg, '--no-progress', ...args], { HOME: work });
    assert.equal(r.code, 0, `s3cmd ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  await s3cmd('mb', 's3://sse-s3-s3cmd');
  for (const name of ['a.txt', 'sub/big.bin']) {
    await s3cmd(
      'put',
      '--server-side-encryption',
      '--multipart-chunk-size-mb=5',
      join(src, name),
      `s3://sse-s3-s3cmd/${name}`,
    );
    assert.equal(await sseOf('sse-s3-s3cmd', name), 'AES256', name);
    const back = join(work, `s3cmd-${name.replace('/', '-')}`);
    await s3cmd('get', `s3://sse-s3-s3cmd/${name}`, back);
    const sum = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sum(readFileSync(back)), sum(contents[name]!), name);
  }
});
