// Interop: rclone's S3 backend with SSE-C (`sse_customer_algorithm`, `sse_customer_key_base64`) against a coffre
// server over HTTPS, trusting the generated certificate with --ca-cert: copy a tree up (small files and one
// uploaded in parts), check it, copy it down, and confirm with the SDK that the objects are stored under the key.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { runCommand } from '../helpers/server.js';
import { requireTools, writeRcloneConfig } from '../helpers/tools.js';
import { customerKey, httpsClient, startTlsServer } from '../security/ssec-helpers.js';

const MiB = 1024 * 1024;

test('rclone with SSE-C over HTTPS: copy up, check, copy down', async (t) => {
  if (!requireTools(t, 'rclone')) return;
  const { server, files, ca } = await startTlsServer();
  const work = mkdtempSync(join(tmpdir(), 'coffre-rclone-'));
  t.after(async () => {
    await server.stop();
    server.cleanup();
    rmSync(work, { recursive: true, force: true });
  });
  const key = customerKey();
  const config = join(work, 'rclone.conf');
  writeRcloneConfig(config, server, [
    'sse_customer_algorithm = AES256',
    `sse_customer_key_base64 = ${key.b64}`,
    // Parts of 5 MiB from 8 MiB on, so the big file goes up as a multipart upload with the key on each part.
    'upload_cutoff = 8M',
    'chunk_size = 5M',
  ]);
  // The machine-wide AWS_CA_BUNDLE would make rclone's AWS SDK replace its transport (and fail): --ca-cert decides.
  const env = { AWS_CA_BUNDLE: '' };
  const rclone = async (...args: string[]) => {
    const r = await runCommand(
      'rclone',
      ['--config', config, '--ca-cert', files.certPath, '--retries', '1', ...args],
      env,
    );
    assert.equal(r.code, 0, `rclone ${args.join(' ')}:\n${r.stderr}`);
    return r;
  };

  const src = join(work, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  const contents: Record<string, Buffer> = {
    'a.txt': Buffer.from('hello, encrypted world\n'),
    empty: Buffer.alloc(0),
    'sub/b.bin': randomBytes(300_000),
    'sub/big.bin': randomBytes(17 * MiB + 3),
  };
  for (const [name, data] of Object.entries(contents)) writeFileSync(join(src, name), data);

  await rclone('mkdir', 'coffre:ssec-rclone');
  await rclone('copy', src, 'coffre:ssec-rclone/tree');
  await rclone('check', src, 'coffre:ssec-rclone/tree');
  await rclone('check', '--download', src, 'coffre:ssec-rclone/tree');

  // Stored under the key: the SDK needs it, and reads the same bytes with it.
  const s3 = httpsClient(server, ca);
  t.after(() => s3.destroy());
  for (const [name, data] of Object.entries(contents)) {
    await assert.rejects(
      s3.send(new GetObjectCommand({ Bucket: 'ssec-rclone', Key: `tree/${name}` })),
      (err: unknown) => err instanceof S3ServiceException && err.name === 'InvalidRequest',
    );
    const got = await s3.send(
      new GetObjectCommand({
        Bucket: 'ssec-rclone',
        Key: `tree/${name}`,
        SSECustomerAlgorithm: 'AES256',
        SSECustomerKey: key.b64,
      }),
    );
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data), name);
  }
  const big = await s3.send(
    new HeadObjectCommand({
      Bucket: 'ssec-rclone',
      Key: 'tree/sub/big.bin',
      SSECustomerAlgorithm: 'AES256',
      SSECustomerKey: key.b64,
    }),
  );
  assert.match(big.ETag ?? '', /-\d+"$/, 'the big file went up in parts');

  const dst = join(work, 'dst');
  await rclone('copy', 'coffre:ssec-rclone/tree', dst);
  for (const [name, data] of Object.entries(contents))
    assert.ok(readFileSync(join(dst, name)).equals(data), name);

  // The same remote with another key (a connection-string override, which beats the config file) cannot read.
  const r = await runCommand(
    'rclone',
    [
      '--config',
      config,
      '--ca-cert',
      files.certPath,
      '--retries',
      '1',
      '--low-level-retries',
      '1',
      '--dump',
      'headers',
      'cat',
      `coffre,sse_customer_key_base64="${customerKey().b64}":ssec-rclone/tree/a.txt`,
    ],
    env,
  );
  // rclone takes the refused HEAD for "no such file" (then lists the name as a directory): no bytes come out.
  assert.equal(r.stdout, '', 'nothing is read with another key');
  assert.match(r.stderr, /HEAD \/ssec-rclone\/tree\/a\.txt[\s\S]*?HTTP\/1\.1 403 Forbidden/);
});
