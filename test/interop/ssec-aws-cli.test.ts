// Interop: the aws CLI (v2) with SSE-C against a coffre server — `aws s3 cp --sse-c AES256 --sse-c-key
// fileb://…` up and down (a multipart file over 100 MiB, checked by SHA-256), a server-side copy onto itself that
// changes the key (after which the old key fails and the new one reads), s3api put/get/head with a key and a
// range — over plain HTTP on loopback and over HTTPS with a generated certificate.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCommand, startServerFor, type TestServer } from '../helpers/server.js';
import { requireTools } from '../helpers/tools.js';
import { AWS_BIN, awsEnv, customerKey, startTlsServer } from '../security/ssec-helpers.js';

const MiB = 1024 * 1024;
const BIG = 100 * MiB + 12_345;

/** Writes `size` random bytes to `path` a MiB at a time; returns their SHA-256. */
async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let left = size; left > 0; left -= MiB) {
    const chunk = randomBytes(Math.min(MiB, left));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function scenario(t: TestContext, server: TestServer, caPath?: string): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'coffre-awscli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = awsEnv(server, home);
  const base = ['--endpoint-url', server.endpoint, ...(caPath ? ['--ca-bundle', caPath] : [])];
  const aws = async (...args: string[]) => {
    const r = await runCommand(AWS_BIN, [...base, ...args], env);
    return r;
  };
  const ok = async (...args: string[]) => {
    const r = await aws(...args);
    assert.equal(r.code, 0, `aws ${args.join(' ')}:\n${r.stderr}`);
    return r;
  };

  const oldKey = customerKey();
  const newKey = customerKey();
  const oldPath = join(home, 'old.key');
  const newPath = join(home, 'new.key');
  writeFileSync(oldPath, oldKey.raw, { mode: 0o600 });
  writeFileSync(newPath, newKey.raw, { mode: 0o600 });
  const sseOld = ['--sse-c', 'AES256', '--sse-c-key', `fileb://${oldPath}`];
  const sseNew = ['--sse-c', 'AES256', '--sse-c-key', `fileb://${newPath}`];
  const apiOld = ['--sse-customer-algorithm', 'AES256', '--sse-customer-key', `fileb://${oldPath}`];
  const apiNew = ['--sse-customer-algorithm', 'AES256', '--sse-customer-key', `fileb://${newPath}`];

  await ok('s3', 'mb', 's3://ssec-cli');

  // A small object with s3api: put, head, get with a range.
  const small = randomBytes(300_000);
  const smallPath = join(home, 'small.bin');
  writeFileSync(smallPath, small);
  const put = await ok(
    's3api',
    'put-object',
    '--bucket',
    'ssec-cli',
    '--key',
    'small.bin',
    '--body',
    smallPath,
    ...apiOld,
  );
  const putOut = JSON.parse(put.stdout) as { SSECustomerAlgorithm?: string; SSECustomerKeyMD5?: string };
  assert.equal(putOut.SSECustomerAlgorithm, 'AES256');
  assert.equal(putOut.SSECustomerKeyMD5, oldKey.md5);
  const head = await ok('s3api', 'head-object', '--bucket', 'ssec-cli', '--key', 'small.bin', ...apiOld);
  assert.equal((JSON.parse(head.stdout) as { ContentLength: number }).ContentLength, small.length);
  const rangePath = join(home, 'range.bin');
  const ranged = await ok(
    's3api',
    'get-object',
    '--bucket',
    'ssec-cli',
    '--key',
    'small.bin',
    '--range',
    'bytes=65500-140000',
    ...apiOld,
    rangePath,
  );
  assert.match(ranged.stdout, /bytes 65500-140000\/300000/);
  assert.ok(readFileSync(rangePath).equals(small.subarray(65_500, 140_001)));
  // Without the key, or with the other one, the CLI fails with the server's status.
  const noKey = await aws('s3api', 'get-object', '--bucket', 'ssec-cli', '--key', 'small.bin', rangePath);
  assert.notEqual(noKey.code, 0);
  assert.match(noKey.stderr, /InvalidRequest|400/);
  const wrong = await aws('s3api', 'head-object', '--bucket', 'ssec-cli', '--key', 'small.bin', ...apiNew);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /403|Forbidden/);

  // A big file: multipart up, down, SHA-256 round trip.
  const bigPath = join(home, 'big.bin');
  const bigSha = await writeRandomFile(bigPath, BIG);
  await ok('s3', 'cp', bigPath, 's3://ssec-cli/big.bin', ...sseOld);
  const bigHead = JSON.parse(
    (await ok('s3api', 'head-object', '--bucket', 'ssec-cli', '--key', 'big.bin', ...apiOld)).stdout,
  ) as { ContentLength: number; ETag: string };
  assert.equal(bigHead.ContentLength, BIG);
  assert.match(bigHead.ETag, /-\d+"$/, 'uploaded in parts');
  const downPath = join(home, 'down.bin');
  await ok('s3', 'cp', 's3://ssec-cli/big.bin', downPath, ...sseOld);
  assert.equal(await sha256File(downPath), bigSha);
  rmSync(downPath);

  // Copy onto itself with a new key (server-side, multipart copy for an object this size). The CLI's default
  // --copy-props also copies tags with GetObjectTagging, which coffre does not implement; metadata is copied.
  await ok(
    's3',
    'cp',
    's3://ssec-cli/big.bin',
    's3://ssec-cli/big.bin',
    '--copy-props',
    'metadata-directive',
    '--sse-c-copy-source',
    'AES256',
    '--sse-c-copy-source-key',
    `fileb://${oldPath}`,
    ...sseNew,
  );
  const old = await aws('s3api', 'head-object', '--bucket', 'ssec-cli', '--key', 'big.bin', ...apiOld);
  assert.notEqual(old.code, 0, 'the old key no longer opens the object');
  assert.match(old.stderr, /403|Forbidden/);
  const oldGet = await aws('s3', 'cp', 's3://ssec-cli/big.bin', downPath, ...sseOld);
  assert.notEqual(oldGet.code, 0);
  await ok('s3', 'cp', 's3://ssec-cli/big.bin', downPath, ...sseNew);
  assert.equal(await sha256File(downPath), bigSha);
  rmSync(downPath);
  rmSync(bigPath);

  // s3 cp of a small file with a key, and a plaintext file beside it.
  await ok('s3', 'cp', smallPath, 's3://ssec-cli/copied.bin', ...sseNew);
  await ok('s3', 'cp', 's3://ssec-cli/copied.bin', rangePath, ...sseNew);
  assert.ok(readFileSync(rangePath).equals(small));
  await ok('s3', 'cp', smallPath, 's3://ssec-cli/plain.bin');
  await ok('s3', 'cp', 's3://ssec-cli/plain.bin', rangePath);
  assert.ok(readFileSync(rangePath).equals(small));
  const keyForPlain = await aws('s3', 'cp', 's3://ssec-cli/plain.bin', rangePath, ...sseNew);
  assert.notEqual(keyForPlain.code, 0, 'a key for a plaintext object is refused');
}

test('aws CLI: SSE-C put, get, range, multipart cp and key-changing copy over HTTP on loopback', async (t) => {
  if (!requireTools(t, AWS_BIN)) return;
  const server = await startServerFor(t);
  await scenario(t, server);
});

test('aws CLI: the same over HTTPS with the generated certificate (--ca-bundle)', async (t) => {
  if (!requireTools(t, AWS_BIN)) return;
  const { server, files } = await startTlsServer();
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  assert.match(server.endpoint, /^https:/);
  await scenario(t, server, files.certPath);
});
