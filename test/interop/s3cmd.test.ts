// Interop: s3cmd (SigV4, plain HTTP) against a coffre server — mb, put (a 12 MiB file in 5 MiB parts, and a
// small one with metadata), ls/la/du, info, get, cp, sync, del, rb; setpolicy, info and delpolicy.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runCommand, type TestServer } from '../helpers/server.js';
import { assertPutEtag, startTarget } from '../helpers/target.js';
import { hasTool, requireTools, writeS3cmdConfig } from '../helpers/tools.js';

let server: TestServer | undefined;
let work: string;
let config: string;
const MiB = 1024 * 1024;

before(async () => {
  if (!hasTool('s3cmd') && !process.env.CI) return;
  server = await startTarget();
  work = mkdtempSync(join(tmpdir(), 'coffre-s3cmd-'));
  config = join(work, 's3cfg');
  writeS3cmdConfig(config, server, ['check_ssl_certificate = False', 'guess_mime_type = True']);
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

async function s3cmd(args: string[], expectOk = true) {
  const r = await runCommand('s3cmd', ['-c', config, '--no-progress', ...args], { HOME: work });
  if (expectOk && r.code !== 0)
    assert.fail(`s3cmd ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}${serverExit()}`);
  return r;
}

test('s3cmd mb, put (multipart and single), ls, info, get, cp, del, rb', async (t) => {
  if (!requireTools(t, 's3cmd')) return;
  await s3cmd(['mb', 's3://s3cmd-bucket']);
  const lsBuckets = await s3cmd(['ls']);
  assert.match(lsBuckets.stdout, /s3:\/\/s3cmd-bucket/);

  const big = randomBytes(12 * MiB + 77);
  writeFileSync(join(work, 'big.bin'), big);
  await s3cmd(['put', '--multipart-chunk-size-mb=5', join(work, 'big.bin'), 's3://s3cmd-bucket/dir/big.bin']);
  const small = Buffer.from('<html>small</html>\n');
  writeFileSync(join(work, 'page.html'), small);
  await s3cmd([
    'put',
    '--add-header=Cache-Control:max-age=30',
    join(work, 'page.html'),
    's3://s3cmd-bucket/page.html',
  ]);

  const s3 = new S3Client({
    endpoint: server!.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server!.accessKeyId, secretAccessKey: server!.secretAccessKey },
  });
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: 's3cmd-bucket', Key: 'dir/big.bin' }));
    assert.match(head.ETag!, /^"[0-9a-f]{32}-3"$/, 'three 5 MiB parts');
    assert.equal(head.ContentLength, big.length);
    const page = await s3.send(new HeadObjectCommand({ Bucket: 's3cmd-bucket', Key: 'page.html' }));
    assert.equal(page.ContentType, 'text/html');
    assert.equal(page.CacheControl, 'max-age=30');
    assertPutEtag(page.ETag, small);
  } finally {
    s3.destroy();
  }

  const ls = await s3cmd(['ls', 's3://s3cmd-bucket']);
  assert.match(ls.stdout, /DIR\s+s3:\/\/s3cmd-bucket\/dir\//);
  assert.match(ls.stdout, /\s19\s+s3:\/\/s3cmd-bucket\/page\.html/);
  const rec = await s3cmd(['ls', '--recursive', 's3://s3cmd-bucket']);
  assert.match(rec.stdout, new RegExp(`\\s${big.length}\\s+s3://s3cmd-bucket/dir/big\\.bin`));
  const du = await s3cmd(['du', 's3://s3cmd-bucket']);
  assert.match(du.stdout, new RegExp(`^\\s*${big.length + small.length}\\s+2 objects`));

  const info = await s3cmd(['info', 's3://s3cmd-bucket/dir/big.bin']);
  assert.match(info.stdout, new RegExp(`File size:\\s+${big.length}`));
  // s3cmd stores the whole file's MD5 as metadata for multipart uploads and reports it.
  assert.match(info.stdout, new RegExp(`MD5 sum:\\s+${createHash('md5').update(big).digest('hex')}`));

  await s3cmd(['get', 's3://s3cmd-bucket/dir/big.bin', join(work, 'big.back')]);
  assert.ok(readFileSync(join(work, 'big.back')).equals(big));
  await s3cmd(['get', 's3://s3cmd-bucket/page.html', join(work, 'page.back')]);
  assert.ok(readFileSync(join(work, 'page.back')).equals(small));

  // Server-side copy, then a sync of a small tree.
  await s3cmd(['cp', 's3://s3cmd-bucket/dir/big.bin', 's3://s3cmd-bucket/copy/big.bin']);
  await s3cmd(['get', 's3://s3cmd-bucket/copy/big.bin', join(work, 'copy.back')]);
  assert.ok(readFileSync(join(work, 'copy.back')).equals(big));
  const tree = join(work, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  for (let i = 0; i < 8; i++) writeFileSync(join(tree, 'sub', `f${i}.txt`), `file ${i}\n`);
  await s3cmd(['sync', tree + '/', 's3://s3cmd-bucket/tree/']);
  const synced = await s3cmd(['ls', '--recursive', 's3://s3cmd-bucket/tree/']);
  assert.equal(synced.stdout.trim().split('\n').length, 8);
  const back = join(work, 'tree-back');
  await s3cmd(['sync', 's3://s3cmd-bucket/tree/', back + '/']);
  for (let i = 0; i < 8; i++)
    assert.equal(readFileSync(join(back, 'sub', `f${i}.txt`), 'utf8'), `file ${i}\n`);

  // A missing object is an error with a clear code.
  const missing = await s3cmd(['get', 's3://s3cmd-bucket/nothing', join(work, 'nothing')], false);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /404|NoSuchKey|does not exist/);

  // rb of a non-empty bucket fails; del then rb.
  const rbFull = await s3cmd(['rb', 's3://s3cmd-bucket'], false);
  assert.notEqual(rbFull.code, 0);
  assert.match(rbFull.stderr, /BucketNotEmpty/);
  await s3cmd(['del', 's3://s3cmd-bucket/page.html']);
  await s3cmd(['del', '--recursive', '--force', 's3://s3cmd-bucket/']);
  const empty = await s3cmd(['ls', '--recursive', 's3://s3cmd-bucket']);
  assert.equal(empty.stdout.trim(), '');
  await s3cmd(['rb', 's3://s3cmd-bucket']);
  const lsAfter = await s3cmd(['ls']);
  assert.doesNotMatch(lsAfter.stdout, /s3cmd-bucket/);
});

test('s3cmd setpolicy, info and delpolicy: a public-read prefix read without credentials', async (t) => {
  if (!requireTools(t, 's3cmd')) return;
  await s3cmd(['mb', 's3://s3cmd-policy']);
  writeFileSync(join(work, 'hello.txt'), 'hello, world\n');
  await s3cmd(['put', join(work, 'hello.txt'), 's3://s3cmd-policy/pub/hello.txt']);
  await s3cmd(['put', join(work, 'hello.txt'), 's3://s3cmd-policy/private/hello.txt']);
  const policy = {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: '*',
        Action: ['s3:GetObject'],
        Resource: ['arn:aws:s3:::s3cmd-policy/pub/*'],
      },
    ],
  };
  writeFileSync(join(work, 'policy.json'), JSON.stringify(policy));
  await s3cmd(['setpolicy', join(work, 'policy.json'), 's3://s3cmd-policy']);
  const info = await s3cmd(['info', 's3://s3cmd-policy']);
  assert.match(info.stdout, /Policy:\s+\{/);
  assert.match(info.stdout, /s3cmd-policy\/pub\/\*/);
  const open = await fetch(`${server!.endpoint}/s3cmd-policy/pub/hello.txt`);
  assert.equal(open.status, 200);
  assert.equal(await open.text(), 'hello, world\n');
  assert.equal((await fetch(`${server!.endpoint}/s3cmd-policy/private/hello.txt`)).status, 403);
  writeFileSync(join(work, 'bad.json'), '{"Statement": [{"Effect": "Allow"}]}');
  const bad = await s3cmd(['setpolicy', join(work, 'bad.json'), 's3://s3cmd-policy'], false);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr + bad.stdout, /MalformedPolicy/);
  await s3cmd(['delpolicy', 's3://s3cmd-policy']);
  assert.equal((await fetch(`${server!.endpoint}/s3cmd-policy/pub/hello.txt`)).status, 403);
  const after = await s3cmd(['info', 's3://s3cmd-policy']);
  assert.match(after.stdout, /Policy:\s+none/);
});
