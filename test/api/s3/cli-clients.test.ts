// Real command-line S3 clients (aws CLI, s3cmd) signing uploads and presigned URLs against the authentication
// and body modules. Each client test is skipped when its program is not installed on the machine.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { ACCESS_KEY, REGION, SECRET_KEY } from './sigv4-client.js';
import { startAuthBodyServer, type AuthBodyServer } from './auth-body-server.js';

const run = promisify(execFile);

async function installed(program: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${program}`]);
    return true;
  } catch {
    return false;
  }
}

let srv: AuthBodyServer;
let dir: string;
let file: string;
const data = randomBytes(3_000_000);
const md5 = createHash('md5').update(data).digest('hex');

before(async () => {
  srv = await startAuthBodyServer();
  dir = await mkdtemp(join(tmpdir(), 'coffre-s3-cli-'));
  file = join(dir, 'upload.bin');
  await writeFile(file, data);
  // SigV4 for presigning too (the aws CLI v1 presigns with SigV2 by default).
  await writeFile(join(dir, 'aws-config'), '[default]\ns3 =\n    signature_version = s3v4\n');
});

after(async () => {
  await srv.close();
  await rm(dir, { recursive: true, force: true });
});

/** A clean environment: credentials for the test key only, no user config, no proxies or CA bundles. */
function env(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: SECRET_KEY,
    AWS_DEFAULT_REGION: REGION,
    AWS_CONFIG_FILE: join(dir, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
  };
}

const ODD_KEY = "dir/odd key+!'()*~é.bin";

test('aws CLI: put-object and a presigned GET', async (t) => {
  if (!(await installed('aws'))) return t.skip('aws CLI not installed');
  const before = srv.seen.length;
  const put = await run(
    'aws',
    [
      '--endpoint-url',
      srv.endpoint,
      's3api',
      'put-object',
      '--bucket',
      'b',
      '--key',
      ODD_KEY,
      '--body',
      file,
    ],
    { env: env() },
  );
  assert.match(put.stdout, new RegExp(md5));
  const last = srv.seen[srv.seen.length - 1];
  assert.equal(srv.seen.length, before + 1, JSON.stringify(srv.errors.map((e) => e.message)));
  assert.ok(last.body.equals(data));

  const { stdout: url } = await run(
    'aws',
    ['--endpoint-url', srv.endpoint, 's3', 'presign', 's3://b/some key+é~!.txt', '--expires-in', '300'],
    { env: env() },
  );
  const res = await fetch(url.trim());
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(await res.text(), 'hello');
  assert.equal(srv.seen[srv.seen.length - 1].presigned, true);
  // The same URL with its signature altered is refused.
  const forgedUrl = url
    .trim()
    .replace(
      /(X-Amz-Signature=[0-9a-f]{63})([0-9a-f])/,
      (_m, head: string, last: string) => head + (last === '0' ? '1' : '0'),
    );
  assert.notEqual(forgedUrl, url.trim());
  const forged = await fetch(forgedUrl);
  assert.equal(forged.status, 403);
});

test('s3cmd: put with its own SigV4 canonicalisation', async (t) => {
  if (!(await installed('s3cmd'))) return t.skip('s3cmd not installed');
  const host = srv.endpoint.replace('http://', '');
  const before = srv.seen.length;
  await run(
    's3cmd',
    [
      `--access_key=${ACCESS_KEY}`,
      `--secret_key=${SECRET_KEY}`,
      `--host=${host}`,
      `--host-bucket=${host}`,
      '--no-ssl',
      `--region=${REGION}`,
      '--config=/dev/null',
      'put',
      file,
      's3://b/s3cmd key+!().bin',
    ],
    { env: env() },
  );
  const puts = srv.seen.slice(before).filter((s) => s.method === 'PUT');
  assert.equal(puts.length, 1, JSON.stringify(srv.errors.map((e) => e.message)));
  assert.ok(puts[0].body.equals(data));
});
