// Interop: versioning, object lock and lifecycle from the aws CLI (`s3api`), rclone (`--s3-versions`,
// `--s3-version-at`) and s3cmd (`setlifecycle`, `getlifecycle`, `dellifecycle`) against a coffre server.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCommand, startServer, type TestServer } from '../helpers/server.js';
import { hasTool, requireTools, writeRcloneConfig, writeS3cmdConfig } from '../helpers/tools.js';

let server: TestServer | undefined;
let work: string;
let awsEnv: Record<string, string>;
let rcloneEnv: Record<string, string>;

before(async () => {
  if (!hasTool('aws') && !hasTool('rclone') && !process.env.CI) return;
  server = await startServer();
  work = mkdtempSync(join(tmpdir(), 'coffre-cli-versions-'));
  // The user's own configurations must never leak in.
  writeFileSync(join(work, 'config'), '[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n');
  writeFileSync(
    join(work, 'credentials'),
    `[default]\naws_access_key_id = ${server.accessKeyId}\naws_secret_access_key = ${server.secretAccessKey}\n`,
    { mode: 0o600 },
  );
  awsEnv = {
    AWS_CONFIG_FILE: join(work, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'credentials'),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
    HOME: work,
  };
  const rcloneConfig = join(work, 'rclone.conf');
  writeRcloneConfig(rcloneConfig, server);
  rcloneEnv = {
    RCLONE_CONFIG: rcloneConfig,
    HOME: work,
    RCLONE_CACHE_DIR: join(work, 'cache'),
    AWS_CA_BUNDLE: '',
  };
});

after(async () => {
  await server?.stop();
  server?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The fields of the aws CLI's JSON answers these tests read (each test reads those its command gives). */
interface AwsAnswer {
  Status: string;
  VersionId: string;
  DeleteMarker: boolean;
  Versions: { VersionId: string }[];
  DeleteMarkers: { VersionId: string; IsLatest: boolean }[];
  ObjectLockConfiguration: { Rule: unknown };
  Retention: { Mode: string };
  LegalHold: { Status: string };
  Rules: { ID: string }[];
}

async function aws(args: string[], expectOk = true) {
  const r = await runCommand(
    'aws',
    ['--endpoint-url', server!.endpoint, ...args, '--output', 'json'],
    awsEnv,
  );
  if (expectOk && r.code !== 0)
    assert.fail(`aws ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { ...r, json: (r.code === 0 && r.stdout.trim() ? JSON.parse(r.stdout) : {}) as AwsAnswer };
}

async function rclone(args: string[]) {
  const r = await runCommand('rclone', ['--low-level-retries', '1', '--retries', '1', ...args], rcloneEnv);
  if (r.code !== 0) assert.fail(`rclone ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('aws s3api: versioning, versions by id, delete markers, ListObjectVersions', async (t) => {
  if (!requireTools(t, 'aws')) return;
  const B = 'cli-versions';
  await aws(['s3api', 'create-bucket', '--bucket', B]);
  await aws([
    's3api',
    'put-bucket-versioning',
    '--bucket',
    B,
    '--versioning-configuration',
    'Status=Enabled',
  ]);
  assert.equal((await aws(['s3api', 'get-bucket-versioning', '--bucket', B])).json.Status, 'Enabled');
  const file = join(work, 'body.txt');
  const ids: string[] = [];
  for (const text of ['first', 'second']) {
    writeFileSync(file, text);
    ids.push(
      (await aws(['s3api', 'put-object', '--bucket', B, '--key', 'k', '--body', file])).json.VersionId,
    );
  }
  const out = join(work, 'out.txt');
  const got = await aws(['s3api', 'get-object', '--bucket', B, '--key', 'k', '--version-id', ids[0]!, out]);
  assert.equal(got.json.VersionId, ids[0]);
  assert.equal(readFileSync(out, 'utf8'), 'first');
  const del = await aws(['s3api', 'delete-object', '--bucket', B, '--key', 'k']);
  assert.equal(del.json.DeleteMarker, true);
  const listed = (await aws(['s3api', 'list-object-versions', '--bucket', B])).json;
  assert.deepEqual(
    listed.Versions.map((v: { VersionId: string }) => v.VersionId),
    [ids[1], ids[0]],
  );
  assert.equal(listed.DeleteMarkers[0].IsLatest, true);
  // Paged by the CLI itself, one entry a page.
  const paged = (await aws(['s3api', 'list-object-versions', '--bucket', B, '--page-size', '1'])).json;
  assert.equal(paged.Versions.length + paged.DeleteMarkers.length, 3);
  await aws(['s3api', 'delete-object', '--bucket', B, '--key', 'k', '--version-id', del.json.VersionId]);
  await aws(['s3api', 'head-object', '--bucket', B, '--key', 'k']);
});

test('aws s3api: object lock configuration, retention, legal hold and the bypass header', async (t) => {
  if (!requireTools(t, 'aws')) return;
  const B = 'cli-lock';
  await aws(['s3api', 'create-bucket', '--bucket', B, '--object-lock-enabled-for-bucket']);
  await aws([
    's3api',
    'put-object-lock-configuration',
    '--bucket',
    B,
    '--object-lock-configuration',
    '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"GOVERNANCE","Days":1}}}',
  ]);
  const conf = (await aws(['s3api', 'get-object-lock-configuration', '--bucket', B])).json;
  assert.deepEqual(conf.ObjectLockConfiguration.Rule, { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } });
  const file = join(work, 'locked.txt');
  writeFileSync(file, 'locked');
  const { VersionId } = (await aws(['s3api', 'put-object', '--bucket', B, '--key', 'l', '--body', file]))
    .json;
  const retention = (await aws(['s3api', 'get-object-retention', '--bucket', B, '--key', 'l'])).json;
  assert.equal(retention.Retention.Mode, 'GOVERNANCE');
  const until = new Date(Date.now() + 2 * 24 * 3600_000).toISOString();
  await aws([
    's3api',
    'put-object-retention',
    '--bucket',
    B,
    '--key',
    'l',
    '--retention',
    `{"Mode":"GOVERNANCE","RetainUntilDate":"${until}"}`,
  ]);
  await aws(['s3api', 'put-object-legal-hold', '--bucket', B, '--key', 'l', '--legal-hold', 'Status=ON']);
  assert.equal(
    (await aws(['s3api', 'get-object-legal-hold', '--bucket', B, '--key', 'l'])).json.LegalHold.Status,
    'ON',
  );
  const refused = await aws(
    ['s3api', 'delete-object', '--bucket', B, '--key', 'l', '--version-id', VersionId],
    false,
  );
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /AccessDenied/);
  await aws(['s3api', 'put-object-legal-hold', '--bucket', B, '--key', 'l', '--legal-hold', 'Status=OFF']);
  await aws([
    's3api',
    'delete-object',
    '--bucket',
    B,
    '--key',
    'l',
    '--version-id',
    VersionId,
    '--bypass-governance-retention',
  ]);
});

test('aws s3api: lifecycle configuration is set, read back and deleted', async (t) => {
  if (!requireTools(t, 'aws')) return;
  const B = 'cli-lifecycle';
  await aws(['s3api', 'create-bucket', '--bucket', B]);
  await aws([
    's3api',
    'put-bucket-lifecycle-configuration',
    '--bucket',
    B,
    '--lifecycle-configuration',
    JSON.stringify({
      Rules: [
        { ID: 'tmp', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 3 } },
        {
          ID: 'mpu',
          Status: 'Enabled',
          Filter: {},
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        },
      ],
    }),
  ]);
  const rules = (await aws(['s3api', 'get-bucket-lifecycle-configuration', '--bucket', B])).json.Rules;
  assert.deepEqual(
    rules.map((r: { ID: string }) => r.ID),
    ['tmp', 'mpu'],
  );
  await aws(['s3api', 'delete-bucket-lifecycle', '--bucket', B]);
  const gone = await aws(['s3api', 'get-bucket-lifecycle-configuration', '--bucket', B], false);
  assert.match(gone.stderr, /NoSuchLifecycleConfiguration/);
});

test('rclone --s3-versions lists old versions, and --s3-version-at reads the bucket as it was', async (t) => {
  if (!requireTools(t, 'rclone')) return;
  const B = 'rclone-versions';
  await rclone(['mkdir', `coffre:${B}`]);
  await runCommand(
    'aws',
    [
      '--endpoint-url',
      server!.endpoint,
      's3api',
      'put-bucket-versioning',
      '--bucket',
      B,
      '--versioning-configuration',
      'Status=Enabled',
    ],
    awsEnv,
  );
  const src = join(work, 'notes.txt');
  writeFileSync(src, 'old notes\n');
  await rclone(['copyto', src, `coffre:${B}/notes.txt`]);
  // Listings give times to the second: the next version is written in a later second than the first.
  const between = Math.floor(Date.now() / 1000) * 1000 + 1000;
  const deadline = Date.now() + 10_000;
  while (Date.now() < between + 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  writeFileSync(src, 'new notes\n');
  await rclone(['copyto', src, `coffre:${B}/notes.txt`]);
  const listed = (await rclone(['--s3-versions', 'lsf', `coffre:${B}`])).trim().split('\n').sort();
  assert.equal(listed.length, 2, listed.join(', '));
  assert.ok(listed.includes('notes.txt'));
  assert.match(
    listed.find((n) => n !== 'notes.txt')!,
    /^notes-v\d{4}-\d\d-\d\d-\d{6}-\d{3}\.txt$/,
  );
  assert.equal(await rclone(['cat', `coffre:${B}/notes.txt`]), 'new notes\n');
  const at = new Date(between).toISOString();
  assert.equal(await rclone(['--s3-version-at', at, 'cat', `coffre:${B}/notes.txt`]), 'old notes\n');
});

test('s3cmd setlifecycle, getlifecycle and dellifecycle', async (t) => {
  if (!requireTools(t, 's3cmd')) return;
  const config = join(work, 's3cmd.conf');
  writeS3cmdConfig(config, server!);
  const s3cmd = async (args: string[], expectOk = true) => {
    const r = await runCommand('s3cmd', ['-c', config, '--no-progress', ...args], { HOME: work });
    if (expectOk && r.code !== 0)
      assert.fail(`s3cmd ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  await s3cmd(['mb', 's3://s3cmd-lifecycle']);
  const rules = join(work, 'lifecycle.xml');
  writeFileSync(
    rules,
    '<LifecycleConfiguration><Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>' +
      '<Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>',
  );
  await s3cmd(['setlifecycle', rules, 's3://s3cmd-lifecycle']);
  const got = await s3cmd(['getlifecycle', 's3://s3cmd-lifecycle']);
  assert.match(got.stdout, /<ID>logs<\/ID>/);
  assert.match(got.stdout, /<Days>30<\/Days>/);
  await s3cmd(['dellifecycle', 's3://s3cmd-lifecycle']);
  const gone = await s3cmd(['getlifecycle', 's3://s3cmd-lifecycle'], false);
  assert.notEqual(gone.code, 0);
});
