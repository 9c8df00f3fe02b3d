// Interop: the aws CLI against a coffre server — `aws s3` (mb, cp both ways, ls, sync, rm, rb) and `aws s3api`
// (put-object, get-object with a range, head-object, list-objects-v2, copy-object, delete-objects), and a
// multipart upload of a 100 MiB file whose sha256 survives the round trip; bucket policies through `aws s3api`.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, test, type TestContext } from 'node:test';
import { runCommand, type TestServer } from '../helpers/server.js';
import { assertPutEtag, startTarget, viaGateway } from '../helpers/target.js';
import { hasTool, requireTools } from '../helpers/tools.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';

let server: TestServer | undefined;
let work: string;
let env: Record<string, string>;
const MiB = 1024 * 1024;

before(async () => {
  if (!hasTool('aws') && !process.env.CI) return;
  server = await startTarget();
  work = mkdtempSync(join(tmpdir(), 'coffre-awscli-'));
  // The user's own aws configuration must never leak in: config and credentials files of our own.
  // aws CLI v1 presigns with signature V2 unless told otherwise; coffre speaks V4 only.
  writeFileSync(join(work, 'config'), '[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n');
  writeFileSync(join(work, 'config-v2'), '[default]\nregion = us-east-1\n');
  writeFileSync(
    join(work, 'credentials'),
    `[default]\naws_access_key_id = ${server.accessKeyId}\naws_secret_access_key = ${server.secretAccessKey}\n`,
    { mode: 0o600 },
  );
  env = {
    AWS_CONFIG_FILE: join(work, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'credentials'),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_PROFILE: 'default',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
    HOME: work,
  };
});

after(async () => {
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function aws(args: string[], expectOk = true, extraEnv: Record<string, string> = {}) {
  const r = await runCommand('aws', ['--endpoint-url', server!.endpoint, ...args], { ...env, ...extraEnv });
  if (expectOk && r.code !== 0) {
    const exited = server!.process.exitCode ?? server!.process.signalCode;
    const serverSide =
      exited === null ? '' : `\nthe server exited (${exited}):\n${server!.stderr().slice(-4000)}`;
    assert.fail(`aws ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}${serverSide}`);
  }
  return r;
}

async function awsJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const r = await aws([...args, '--output', 'json']);
  return (r.stdout.trim() ? JSON.parse(r.stdout) : {}) as T;
}

const WRITTEN_EARLIER = new Date(Date.now() - 3600_000);

function writeTree(root: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const add = (rel: string, data: Buffer) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
    // Files a user syncs were written before: `aws s3 sync` re-uploads a file whose mtime is later than the
    // listing's LastModified (whole seconds), so a file written in the same second as its upload would be
    // sent again whatever the server does.
    utimesSync(join(root, rel), WRITTEN_EARLIER, WRITTEN_EARLIER);
    files.set(rel, data);
  };
  add('top.txt', Buffer.from('top level\n'));
  add('empty', Buffer.alloc(0));
  add('docs/readme.md', Buffer.from('# readme\n'));
  add('docs/deep/nested/file with spaces.bin', randomBytes(70_000));
  add('data/ünïcødé.dat', randomBytes(1234));
  add('data/two.bin', randomBytes(2 * MiB + 5));
  add('odd/a+b=c&d %20e~!.txt', Buffer.from('odd characters\n'));
  for (let i = 0; i < 20; i++) add(`many/f${i}.txt`, Buffer.from(`file ${i}\n`));
  return files;
}

function skipUnlessAws(t: TestContext): boolean {
  return requireTools(t, 'aws');
}

test('aws s3: mb, ls, cp up and down, sync both ways (with --delete), rm, rb', async (t) => {
  if (!skipUnlessAws(t)) return;
  await aws(['s3', 'mb', 's3://cli-s3']);
  const ls = await aws(['s3', 'ls']);
  assert.match(ls.stdout, /\scli-s3\n/);

  // cp a single file up and back.
  const one = randomBytes(300_000);
  writeFileSync(join(work, 'one.bin'), one);
  await aws(['s3', 'cp', join(work, 'one.bin'), 's3://cli-s3/single/one.bin', '--only-show-errors']);
  await aws(['s3', 'cp', 's3://cli-s3/single/one.bin', join(work, 'one.back'), '--only-show-errors']);
  assert.ok(readFileSync(join(work, 'one.back')).equals(one));

  // sync a tree up, list it, sync it down elsewhere, compare.
  const src = join(work, 'tree');
  const files = writeTree(src);
  await aws(['s3', 'sync', src, 's3://cli-s3/tree', '--only-show-errors']);
  const rec = await aws(['s3', 'ls', '--recursive', 's3://cli-s3/tree/']);
  for (const [rel, data] of files) {
    assert.ok(rec.stdout.includes(`tree/${rel}\n`), `listed ${rel}`);
    assert.match(
      rec.stdout,
      new RegExp(`\\s${data.length} tree/${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`),
    );
  }
  const top = await aws(['s3', 'ls', 's3://cli-s3/tree/']);
  assert.match(top.stdout, /PRE docs\//);
  assert.match(top.stdout, /PRE many\//);
  assert.match(top.stdout, /top\.txt/);
  const dst = join(work, 'tree-back');
  await aws(['s3', 'sync', 's3://cli-s3/tree', dst, '--only-show-errors']);
  for (const [rel, data] of files) assert.ok(readFileSync(join(dst, rel)).equals(data), `synced back ${rel}`);

  // A second sync with nothing changed uploads nothing; a changed file is the only one sent.
  const again = await aws(['s3', 'sync', src, 's3://cli-s3/tree', '--no-progress']);
  assert.equal(again.stdout.trim(), '', `nothing to do, got: ${again.stdout}`);
  writeFileSync(join(src, 'top.txt'), 'changed top level, longer\n');
  rmSync(join(src, 'many/f3.txt'));
  const changed = await aws(['s3', 'sync', src, 's3://cli-s3/tree', '--delete', '--no-progress']);
  assert.match(changed.stdout, /upload: .*top\.txt/);
  assert.match(changed.stdout, /delete: s3:\/\/cli-s3\/tree\/many\/f3\.txt/);
  assert.equal(changed.stdout.trim().split('\n').length, 2, changed.stdout);
  await aws(['s3', 'cp', 's3://cli-s3/tree/top.txt', join(work, 'top.back'), '--only-show-errors']);
  assert.equal(readFileSync(join(work, 'top.back'), 'utf8'), 'changed top level, longer\n');

  // Bucket to bucket: sync is server-side copies; mv copies then deletes the source.
  await aws(['s3', 'mb', 's3://cli-other']);
  await aws(['s3', 'sync', 's3://cli-s3/tree', 's3://cli-other/copied', '--only-show-errors']);
  const copied = await aws(['s3', 'ls', '--recursive', 's3://cli-other/copied/']);
  assert.equal(copied.stdout.trim().split('\n').length, files.size - 1);
  await aws([
    's3',
    'mv',
    's3://cli-other/copied/odd/a+b=c&d %20e~!.txt',
    's3://cli-other/moved.txt',
    '--only-show-errors',
  ]);
  await aws(['s3', 'cp', 's3://cli-other/moved.txt', join(work, 'moved.back'), '--only-show-errors']);
  assert.equal(readFileSync(join(work, 'moved.back'), 'utf8'), 'odd characters\n');
  const afterMove = await aws(['s3', 'ls', 's3://cli-other/copied/odd/'], false);
  assert.equal(afterMove.stdout.trim(), '');

  // aws s3 presign: a URL any HTTP client can use, and one that has lapsed.
  const url = (await aws(['s3', 'presign', 's3://cli-other/moved.txt', '--expires-in', '300'])).stdout.trim();
  assert.ok(url.startsWith(server!.endpoint + '/cli-other/moved.txt?'), url);
  const viaUrl = await fetch(url);
  assert.equal(viaUrl.status, 200);
  assert.equal(await viaUrl.text(), 'odd characters\n');
  const lapsed = (
    await aws(['s3', 'presign', 's3://cli-other/moved.txt', '--expires-in', '1'])
  ).stdout.trim();
  await new Promise((r) => setTimeout(r, 2100));
  const late = await fetch(lapsed);
  assert.equal(late.status, 403);
  assert.match(await late.text(), /expired/i);
  // A signature V2 URL (the CLI's default without s3v4) is refused with a clear message, not misread.
  const v2 = (
    await aws(['s3', 'presign', 's3://cli-other/moved.txt'], true, {
      AWS_CONFIG_FILE: join(work, 'config-v2'),
    })
  ).stdout.trim();
  assert.match(v2, /AWSAccessKeyId=/);
  const v2res = await fetch(v2);
  assert.equal(v2res.status, 400);
  assert.match(await v2res.text(), /Please use AWS4-HMAC-SHA256/);
  await aws(['s3', 'rb', 's3://cli-other', '--force']);

  // rb refuses a bucket with objects; rm then rb.
  const rbFull = await aws(['s3', 'rb', 's3://cli-s3'], false);
  assert.notEqual(rbFull.code, 0);
  assert.match(rbFull.stderr, /BucketNotEmpty/);
  await aws(['s3', 'rm', 's3://cli-s3/single/one.bin', '--only-show-errors']);
  const gone = await aws(['s3', 'ls', 's3://cli-s3/single/'], false);
  assert.equal(gone.stdout.trim(), '');
  await aws(['s3', 'rm', 's3://cli-s3/tree', '--recursive', '--only-show-errors']);
  const empty = await awsJson<{ KeyCount?: number }>(['s3api', 'list-objects-v2', '--bucket', 'cli-s3']);
  assert.ok(!empty.KeyCount);
  await aws(['s3', 'rb', 's3://cli-s3']);
  const after = await aws(['s3', 'ls']);
  assert.doesNotMatch(after.stdout, /\scli-s3\n/);
  // rb --force removes contents too.
  await aws(['s3', 'mb', 's3://cli-force']);
  await aws(['s3', 'cp', join(work, 'one.bin'), 's3://cli-force/x', '--only-show-errors']);
  await aws(['s3', 'rb', 's3://cli-force', '--force']);
  const final = await aws(['s3', 'ls']);
  assert.doesNotMatch(final.stdout, /cli-force/);
});

test('aws s3api: put-object, get-object with a range, head-object, list-objects-v2, copy-object, delete-objects', async (t) => {
  if (!skipUnlessAws(t)) return;
  await aws(['s3api', 'create-bucket', '--bucket', 'cli-api']);
  const body = randomBytes(100_000);
  writeFileSync(join(work, 'body.bin'), body);
  const md5b64 = createHash('md5').update(body).digest('base64');
  const put = await awsJson<{ ETag: string }>([
    's3api',
    'put-object',
    '--bucket',
    'cli-api',
    '--key',
    'dir/obj.bin',
    '--body',
    join(work, 'body.bin'),
    '--content-type',
    'application/x-cli',
    '--metadata',
    'color=green,size=large',
    '--content-md5',
    md5b64,
    '--cache-control',
    'no-store',
  ]);
  assertPutEtag(put.ETag, body);

  const bad = await aws(
    [
      's3api',
      'put-object',
      '--bucket',
      'cli-api',
      '--key',
      'dir/bad',
      '--body',
      join(work, 'body.bin'),
      '--content-md5',
      createHash('md5').update('x').digest('base64'),
    ],
    false,
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /BadDigest/);

  const head = await awsJson<{
    ContentLength: number;
    ContentType: string;
    Metadata: Record<string, string>;
    ETag: string;
    CacheControl: string;
  }>(['s3api', 'head-object', '--bucket', 'cli-api', '--key', 'dir/obj.bin']);
  assert.equal(head.ContentLength, body.length);
  assert.equal(head.ContentType, 'application/x-cli');
  assert.deepEqual(head.Metadata, { color: 'green', size: 'large' });
  assert.equal(head.ETag, put.ETag);
  assert.equal(head.CacheControl, 'no-store');

  const ranged = await awsJson<{ ContentRange: string; ContentLength: number }>([
    's3api',
    'get-object',
    '--bucket',
    'cli-api',
    '--key',
    'dir/obj.bin',
    '--range',
    'bytes=1000-1999',
    join(work, 'range.out'),
  ]);
  assert.equal(ranged.ContentRange, `bytes 1000-1999/${body.length}`);
  assert.equal(ranged.ContentLength, 1000);
  assert.ok(readFileSync(join(work, 'range.out')).equals(body.subarray(1000, 2000)));
  const suffix = await awsJson<{ ContentRange: string }>([
    's3api',
    'get-object',
    '--bucket',
    'cli-api',
    '--key',
    'dir/obj.bin',
    '--range',
    'bytes=-10',
    join(work, 'suffix.out'),
  ]);
  assert.equal(suffix.ContentRange, `bytes ${body.length - 10}-${body.length - 1}/${body.length}`);
  assert.ok(readFileSync(join(work, 'suffix.out')).equals(body.subarray(body.length - 10)));

  // Flexible checksums: sent by the CLI, stored, returned with --checksum-mode and validated by botocore.
  for (const alg of ['CRC32', 'SHA1', 'SHA256']) {
    const sent = await awsJson<Record<string, string>>([
      's3api',
      'put-object',
      '--bucket',
      'cli-api',
      '--key',
      `sums/${alg}`,
      '--body',
      join(work, 'body.bin'),
      '--checksum-algorithm',
      alg,
    ]);
    const field = `Checksum${alg}`;
    assert.ok(sent[field], `put-object returns ${field}`);
    if (alg === 'SHA256') assert.equal(sent[field], createHash('sha256').update(body).digest('base64'));
    const got = await awsJson<Record<string, string>>([
      's3api',
      'get-object',
      '--bucket',
      'cli-api',
      '--key',
      `sums/${alg}`,
      '--checksum-mode',
      'ENABLED',
      join(work, 'sum.out'),
    ]);
    assert.equal(got[field], sent[field]);
    assert.ok(readFileSync(join(work, 'sum.out')).equals(body));
    await aws(['s3api', 'delete-object', '--bucket', 'cli-api', '--key', `sums/${alg}`]);
  }

  const copy = await awsJson<{ CopyObjectResult: { ETag: string } }>([
    's3api',
    'copy-object',
    '--bucket',
    'cli-api',
    '--key',
    'other/copy.bin',
    '--copy-source',
    'cli-api/dir/obj.bin',
  ]);
  // A gateway re-encrypts a copy under its new name's key: the backend's ETag, and so coffre's, is another.
  if (viaGateway()) assertPutEtag(copy.CopyObjectResult.ETag, body);
  else assert.equal(copy.CopyObjectResult.ETag, put.ETag);
  await aws([
    's3api',
    'copy-object',
    '--bucket',
    'cli-api',
    '--key',
    'other/replaced.bin',
    '--copy-source',
    'cli-api/dir/obj.bin',
    '--metadata-directive',
    'REPLACE',
    '--content-type',
    'text/x-new',
    '--metadata',
    'color=red',
  ]);
  const replaced = await awsJson<{ ContentType: string; Metadata: Record<string, string> }>([
    's3api',
    'head-object',
    '--bucket',
    'cli-api',
    '--key',
    'other/replaced.bin',
  ]);
  assert.equal(replaced.ContentType, 'text/x-new');
  assert.deepEqual(replaced.Metadata, { color: 'red' });
  await aws([
    's3api',
    'get-object',
    '--bucket',
    'cli-api',
    '--key',
    'other/copy.bin',
    join(work, 'copy.out'),
  ]);
  assert.ok(readFileSync(join(work, 'copy.out')).equals(body));

  const listed = await awsJson<{
    Contents: { Key: string; Size: number }[];
    CommonPrefixes?: { Prefix: string }[];
  }>(['s3api', 'list-objects-v2', '--bucket', 'cli-api']);
  assert.deepEqual(
    listed.Contents.map((c) => c.Key),
    ['dir/obj.bin', 'other/copy.bin', 'other/replaced.bin'],
  );
  const byDir = await awsJson<{ CommonPrefixes: { Prefix: string }[] }>([
    's3api',
    'list-objects-v2',
    '--bucket',
    'cli-api',
    '--delimiter',
    '/',
  ]);
  assert.deepEqual(
    byDir.CommonPrefixes.map((p) => p.Prefix),
    ['dir/', 'other/'],
  );
  // The CLI pages on its own with a small page size (continuation tokens), and decodes url-encoded keys.
  const paged = await awsJson<{ Contents: { Key: string }[] }>([
    's3api',
    'list-objects-v2',
    '--bucket',
    'cli-api',
    '--page-size',
    '1',
  ]);
  assert.equal(paged.Contents.length, 3);

  const deleted = await awsJson<{ Deleted: { Key: string }[]; Errors?: unknown[] }>([
    's3api',
    'delete-objects',
    '--bucket',
    'cli-api',
    '--delete',
    JSON.stringify({ Objects: [{ Key: 'other/copy.bin' }, { Key: 'other/replaced.bin' }], Quiet: false }),
  ]);
  assert.deepEqual(deleted.Deleted.map((d) => d.Key).sort(), ['other/copy.bin', 'other/replaced.bin']);
  const quiet = await awsJson<{ Deleted?: unknown[] }>([
    's3api',
    'delete-objects',
    '--bucket',
    'cli-api',
    '--delete',
    JSON.stringify({ Objects: [{ Key: 'dir/obj.bin' }], Quiet: true }),
  ]);
  assert.equal(quiet.Deleted, undefined);
  const missing = await aws(
    ['s3api', 'get-object', '--bucket', 'cli-api', '--key', 'dir/obj.bin', join(work, 'nothing')],
    false,
  );
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /NoSuchKey/);
  const noBucket = await aws(['s3api', 'head-bucket', '--bucket', 'cli-nothing-here'], false);
  assert.notEqual(noBucket.code, 0);
  assert.match(noBucket.stderr, /404|Not Found/);
  await aws(['s3api', 'delete-bucket', '--bucket', 'cli-api']);
});

test('aws s3 cp of a 100 MiB file goes multipart and its sha256 survives the round trip', async (t) => {
  if (!skipUnlessAws(t)) return;
  await aws(['s3', 'mb', 's3://cli-big']);
  const path = join(work, 'big.bin');
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let i = 0; i < 100; i++) {
    const chunk = randomBytes(MiB);
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.write(Buffer.from('tail'));
  hash.update('tail');
  out.end();
  await once(out, 'finish');
  const expected = hash.digest('hex');
  const size = 100 * MiB + 4;

  await aws([
    's3',
    'cp',
    path,
    's3://cli-big/big.bin',
    '--no-progress',
    '--only-show-errors',
    '--expected-size',
    String(size),
  ]);
  const head = await awsJson<{ ETag: string; ContentLength: number }>([
    's3api',
    'head-object',
    '--bucket',
    'cli-big',
    '--key',
    'big.bin',
  ]);
  assert.equal(head.ContentLength, size);
  // The aws CLI splits at 8 MiB by default: 13 parts, and the ETag says so.
  assert.match(head.ETag, /^"[0-9a-f]{32}-13"$/);
  const parts = await awsJson<{ PartsCount: number; ContentLength: number }>([
    's3api',
    'head-object',
    '--bucket',
    'cli-big',
    '--key',
    'big.bin',
    '--part-number',
    '13',
  ]);
  assert.equal(parts.PartsCount, 13);
  assert.equal(parts.ContentLength, size - 12 * 8 * MiB);
  rmSync(path);

  const back = join(work, 'big.back');
  await aws(['s3', 'cp', 's3://cli-big/big.bin', back, '--no-progress', '--only-show-errors']);
  const h2 = createHash('sha256');
  for await (const c of createReadStream(back)) h2.update(c as Buffer);
  assert.equal(h2.digest('hex'), expected);
  rmSync(back);
  // No multipart upload is left behind.
  const uploads = await awsJson<{ Uploads?: unknown[] }>([
    's3api',
    'list-multipart-uploads',
    '--bucket',
    'cli-big',
  ]);
  assert.equal(uploads.Uploads, undefined);
  await aws(['s3', 'rb', 's3://cli-big', '--force']);
});

// Each refusal below comes before the 20 MiB body is read: the aws CLI gets the error and stops, rather than
// waiting on a connection it believes is still in use (the test's own timeout is the bound).
test(
  'a refused 20 MiB upload ends at once with the error: cp, put-object and upload-part',
  { timeout: 30_000 },
  async (t) => {
    if (!skipUnlessAws(t)) return;
    const path = join(work, 'refused.bin');
    writeFileSync(path, randomBytes(20 * MiB));
    const cp = await aws(['s3', 'cp', path, 's3://no-such-bucket-cli/refused.bin', '--no-progress'], false);
    assert.notEqual(cp.code, 0);
    assert.match(cp.stderr, /NoSuchBucket/);
    const put = await aws(
      ['s3api', 'put-object', '--bucket', 'no-such-bucket-cli', '--key', 'refused.bin', '--body', path],
      false,
    );
    assert.notEqual(put.code, 0);
    assert.match(put.stderr, /NoSuchBucket/);
    await aws(['s3', 'mb', 's3://cli-refused']);
    const part = await aws(
      [
        's3api',
        'upload-part',
        '--bucket',
        'cli-refused',
        '--key',
        'refused.bin',
        '--upload-id',
        'no-such-upload',
        '--part-number',
        '1',
        '--body',
        path,
      ],
      false,
    );
    assert.notEqual(part.code, 0);
    assert.match(part.stderr, /NoSuchUpload/);
    await aws(['s3', 'rb', 's3://cli-refused']);
    rmSync(path);
  },
);

test('aws s3api put/get/delete-bucket-policy and get-bucket-policy-status; "refuse unencrypted uploads" with aws s3 cp', async (t) => {
  if (!skipUnlessAws(t)) return;
  const operator = await operatorKey('awscli-policy');
  // A gateway has its keyring from the start (it stores every object encrypted).
  if (!viaGateway()) await mustCli(server!, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  await aws(['s3', 'mb', 's3://cli-policy']);
  const denyUnencrypted = {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'DenyIncorrectEncryptionHeader',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:PutObject',
        Resource: 'arn:aws:s3:::cli-policy/*',
        Condition: { StringNotEquals: { 's3:x-amz-server-side-encryption': 'AES256' } },
      },
      {
        Sid: 'PublicRead',
        Effect: 'Allow',
        Principal: '*',
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::cli-policy/public/*',
      },
    ],
  };
  writeFileSync(join(work, 'policy.json'), JSON.stringify(denyUnencrypted));
  await aws([
    's3api',
    'put-bucket-policy',
    '--bucket',
    'cli-policy',
    '--policy',
    `file://${join(work, 'policy.json')}`,
  ]);
  const got = await awsJson<{ Policy: string }>(['s3api', 'get-bucket-policy', '--bucket', 'cli-policy']);
  assert.deepEqual(JSON.parse(got.Policy), denyUnencrypted);
  const status = await awsJson<{ PolicyStatus: { IsPublic: boolean } }>([
    's3api',
    'get-bucket-policy-status',
    '--bucket',
    'cli-policy',
  ]);
  assert.equal(status.PolicyStatus.IsPublic, true);

  // A 20 MiB file goes multipart: refused without --sse, stored with it (its parts carry no header).
  const big = randomBytes(20 * MiB);
  writeFileSync(join(work, 'big.bin'), big);
  const refused = await aws(['s3', 'cp', join(work, 'big.bin'), 's3://cli-policy/public/big.bin'], false);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /AccessDenied/);
  await aws([
    's3',
    'cp',
    '--sse',
    'AES256',
    join(work, 'big.bin'),
    's3://cli-policy/public/big.bin',
    '--only-show-errors',
  ]);
  const head = await awsJson<{ ServerSideEncryption: string; ContentLength: number }>([
    's3api',
    'head-object',
    '--bucket',
    'cli-policy',
    '--key',
    'public/big.bin',
  ]);
  assert.equal(head.ServerSideEncryption, 'AES256');
  assert.equal(head.ContentLength, big.length);
  // Read by anyone, without credentials.
  const anonymous = await fetch(`${server!.endpoint}/cli-policy/public/big.bin`);
  assert.equal(anonymous.status, 200);
  assert.ok(Buffer.from(await anonymous.arrayBuffer()).equals(big));

  const bad = await aws(
    [
      's3api',
      'put-bucket-policy',
      '--bucket',
      'cli-policy',
      '--policy',
      '{"Statement": {"Effect": "Allows"}}',
    ],
    false,
  );
  assert.match(bad.stderr, /MalformedPolicy.*Invalid effect: Allows/);
  await aws(['s3api', 'delete-bucket-policy', '--bucket', 'cli-policy']);
  const none = await aws(['s3api', 'get-bucket-policy', '--bucket', 'cli-policy'], false);
  assert.match(none.stderr, /NoSuchBucketPolicy/);
  assert.equal((await fetch(`${server!.endpoint}/cli-policy/public/big.bin`)).status, 403);
});
