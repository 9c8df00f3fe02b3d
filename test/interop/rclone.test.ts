// Interop: rclone (s3 backend, provider Other) against a coffre server — a tree copied up (one file big enough to
// go multipart), listed, checked, copied back and compared byte for byte, then ranges, server-side copy, sync with
// deletions, delete and purge.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runCommand, type TestServer } from '../helpers/server.js';
import { assertPutEtag, startTarget, viaGateway } from '../helpers/target.js';
import { hasTool, requireTools, writeRcloneConfig } from '../helpers/tools.js';

let server: TestServer | undefined;
let work: string;
let env: Record<string, string>;
const MiB = 1024 * 1024;
const files = new Map<string, Buffer>();

before(async () => {
  if (!hasTool('rclone') && !process.env.CI) return;
  server = await startTarget();
  work = mkdtempSync(join(tmpdir(), 'coffre-rclone-'));
  const config = join(work, 'rclone.conf');
  writeRcloneConfig(config, server);
  // AWS_CA_BUNDLE from the surroundings makes rclone's S3 client fail on plain HTTP ("unsupported transport").
  env = { RCLONE_CONFIG: config, HOME: work, RCLONE_CACHE_DIR: join(work, 'cache'), AWS_CA_BUNDLE: '' };
  const src = join(work, 'src');
  const add = (rel: string, data: Buffer) => {
    mkdirSync(join(src, rel, '..'), { recursive: true });
    writeFileSync(join(src, rel), data);
    files.set(rel, data);
  };
  add('big/twenty.bin', randomBytes(20 * MiB + 333));
  add('empty.txt', Buffer.alloc(0));
  add('a/b/c/deep.txt', Buffer.from('deep\n'));
  add('spaces and ünïcødé/file #1 (copy).txt', Buffer.from('odd name\n'));
  add("odd/a+b=c&d %20e~!$'.txt", Buffer.from('odder name\n'));
  add('medium.bin', randomBytes(3 * MiB));
  for (let i = 0; i < 30; i++)
    add(`small/${String(i).padStart(2, '0')}.txt`, Buffer.from(`small ${i}\n`.repeat(i + 1)));
});

after(async () => {
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** When a command fails because the server is gone, say so and show the end of its log. */
function serverExit(): string {
  const exited = server?.process.exitCode ?? server?.process.signalCode ?? null;
  return exited === null ? '' : `\nthe server exited (${exited}):\n${server!.stderr().slice(-4000)}`;
}

async function rclone(args: string[], expectOk = true) {
  const r = await runCommand(
    'rclone',
    [
      '--s3-upload-cutoff',
      '5M',
      '--s3-chunk-size',
      '5M',
      '--low-level-retries',
      '1',
      '--retries',
      '1',
      ...args,
    ],
    env,
  );
  if (expectOk && r.code !== 0)
    assert.fail(`rclone ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}${serverExit()}`);
  return r;
}

test('rclone copy up, lsf/ls, check, copy back, byte-for-byte compare; multipart for the 20 MiB file', async (t) => {
  if (!requireTools(t, 'rclone')) return;
  await rclone(['mkdir', 'coffre:rc-bucket']);
  const lsd = await rclone(['lsd', 'coffre:']);
  assert.match(lsd.stdout, /rc-bucket/);
  await rclone(['copy', join(work, 'src'), 'coffre:rc-bucket/tree', '--transfers', '4']);

  const lsf = await rclone(['lsf', '-R', '--files-only', 'coffre:rc-bucket/tree']);
  assert.deepEqual(lsf.stdout.trim().split('\n').sort(), [...files.keys()].sort());
  const ls = await rclone(['ls', 'coffre:rc-bucket/tree']);
  for (const [rel, data] of files) {
    const line = ls.stdout.split('\n').find((l) => l.trim().endsWith(' ' + rel));
    assert.ok(line, `ls shows ${rel}`);
    assert.equal(Number(line.trim().split(/\s+/)[0]), data.length, `size of ${rel}`);
  }

  // The big file went up in parts (ETag says -N); rclone keeps its MD5 in metadata so check can still compare.
  const s3 = new S3Client({
    endpoint: server!.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server!.accessKeyId, secretAccessKey: server!.secretAccessKey },
  });
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'rc-bucket', Key: 'tree/big/twenty.bin' }));
    assert.match(head.ETag!, /^"[0-9a-f]{32}-5"$/);
    assert.equal(head.ContentLength, 20 * MiB + 333);
    const small = await s3.send(new HeadObjectCommand({ Bucket: 'rc-bucket', Key: 'tree/medium.bin' }));
    assertPutEtag(small.ETag, files.get('medium.bin')!);
  } finally {
    s3.destroy();
  }

  // check compares by size and hash (MD5), downloading nothing; --download compares the bytes.
  // Every listing flavour rclone can use gives the same names: v1 and v2, with and without url encoding.
  for (const flags of [
    ['--s3-list-version', '1', '--s3-list-url-encode', 'false'],
    ['--s3-list-version', '1', '--s3-list-url-encode', 'true'],
    ['--s3-list-version', '2', '--s3-list-url-encode', 'false'],
    ['--s3-list-version', '2', '--s3-list-url-encode', 'true', '--s3-list-chunk', '7'],
  ]) {
    const out = await rclone(['lsf', '-R', '--files-only', ...flags, 'coffre:rc-bucket/tree']);
    assert.deepEqual(out.stdout.trim().split('\n').sort(), [...files.keys()].sort(), flags.join(' '));
  }

  const check = await rclone(['check', join(work, 'src'), 'coffre:rc-bucket/tree']);
  assert.match(check.stderr, /0 differences found/);
  await rclone(['check', '--download', join(work, 'src'), 'coffre:rc-bucket/tree']);
  const sums = await rclone(['md5sum', 'coffre:rc-bucket/tree']);
  for (const [rel, data] of files) {
    // A gateway's ETags are no MD5s (docs/gateway.md): rclone knows the MD5 of what it sent in parts only,
    // from the metadata it stores itself, and compares the rest by size (or by bytes with --download).
    if (viaGateway() && data.length <= 5 * MiB) continue;
    assert.ok(
      sums.stdout.includes(`${createHash('md5').update(data).digest('hex')}  ${rel}\n`),
      `md5sum of ${rel}`,
    );
  }

  const back = join(work, 'back');
  await rclone(['copy', 'coffre:rc-bucket/tree', back, '--transfers', '4']);
  for (const [rel, data] of files)
    assert.ok(readFileSync(join(back, rel)).equals(data), `copied back ${rel}`);

  // A corrupted local file is noticed by check.
  writeFileSync(join(back, 'medium.bin'), randomBytes(3 * MiB));
  const bad = await rclone(
    ['check', ...(viaGateway() ? ['--download'] : []), back, 'coffre:rc-bucket/tree'],
    false,
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /1 differences found/);
});

test('rclone cat with offset/count (ranges), server-side copyto, sync with deletions, delete, purge', async (t) => {
  if (!requireTools(t, 'rclone')) return;
  const big = files.get('big/twenty.bin')!;
  const catFile = join(work, 'cat.out');
  const r = await runCommand(
    'sh',
    [
      '-c',
      `rclone cat --offset ${5 * MiB - 7} --count 20 coffre:rc-bucket/tree/big/twenty.bin > '${catFile}'`,
    ],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(catFile).equals(big.subarray(5 * MiB - 7, 5 * MiB + 13)));

  // Server-side copy (CopyObject, and multipart copy for the big one given the small cutoff).
  await rclone(['copyto', 'coffre:rc-bucket/tree/medium.bin', 'coffre:rc-bucket/copies/medium.bin']);
  await rclone([
    'copyto',
    'coffre:rc-bucket/tree/big/twenty.bin',
    'coffre:rc-bucket/copies/twenty.bin',
    '--s3-copy-cutoff',
    '5M',
  ]);
  await rclone(['copyto', 'coffre:rc-bucket/copies/twenty.bin', join(work, 'twenty.copy')]);
  assert.ok(readFileSync(join(work, 'twenty.copy')).equals(big));
  await rclone(['copyto', 'coffre:rc-bucket/copies/medium.bin', join(work, 'medium.copy')]);
  assert.ok(readFileSync(join(work, 'medium.copy')).equals(files.get('medium.bin')!));

  // sync: a local deletion and a change propagate.
  const mirror = join(work, 'mirror');
  await rclone(['copy', 'coffre:rc-bucket/tree/small', mirror]);
  rmSync(join(mirror, '00.txt'));
  writeFileSync(join(mirror, '01.txt'), 'changed\n');
  await rclone(['sync', mirror, 'coffre:rc-bucket/tree/small']);
  const after = await rclone(['lsf', 'coffre:rc-bucket/tree/small']);
  const names = after.stdout.trim().split('\n');
  assert.equal(names.length, 29);
  assert.ok(!names.includes('00.txt'));
  const changed = await runCommand('rclone', ['cat', 'coffre:rc-bucket/tree/small/01.txt'], env);
  assert.equal(changed.stdout, 'changed\n');
  // A second sync with nothing changed converges: nothing is sent again, and check agrees.
  const again = await rclone(['sync', '-v', mirror, 'coffre:rc-bucket/tree/small']);
  assert.match(again.stderr, /There was nothing to transfer/);
  assert.doesNotMatch(again.stderr, /: Copied \(/);
  const agree = await rclone(['check', mirror, 'coffre:rc-bucket/tree/small']);
  assert.match(agree.stderr, /0 differences found/);

  await rclone(['delete', 'coffre:rc-bucket/copies', '--include', '*.bin']);
  const copies = await rclone(['lsf', '-R', 'coffre:rc-bucket/copies']);
  assert.equal(copies.stdout.trim(), '');
  await rclone(['deletefile', 'coffre:rc-bucket/tree/empty.txt']);
  const top = await rclone(['lsf', 'coffre:rc-bucket/tree']);
  assert.ok(!top.stdout.split('\n').includes('empty.txt'), 'empty.txt deleted');
  assert.ok(top.stdout.split('\n').includes('medium.bin'));

  await rclone(['purge', 'coffre:rc-bucket']);
  const lsd = await rclone(['lsd', 'coffre:']);
  assert.doesNotMatch(lsd.stdout, /rc-bucket/);
});
