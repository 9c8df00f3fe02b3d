// Logs a person can read: log_format = "pretty" gives one line per entry with the time, the level, the
// message and the fields that matter (for a request: method, bucket/key, status, and for a refusal its code and
// reason); "json" gives pino's JSON lines; log_level chooses what is written; COFFRE_LOG_FORMAT and
// COFFRE_LOG_LEVEL win over coffre.toml; a bad value stops the start with one line naming the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GetObjectCommand, CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { formatPretty } from '../../src/util/log.js';
import { runCoffre, startServer, writeTestConfig, PICKED_PORTS } from '../helpers/server.js';
import { rejects } from '../helpers/s3.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} /;

test('a pretty request line says what was asked, the answer, and why it was refused', () => {
  const line = formatPretty({
    level: 30,
    time: Date.now(),
    msg: 's3 request',
    requestId: '0123456789ABCDEF',
    method: 'GET',
    operation: 'GetObject',
    bucket: 'photos',
    key: 'dir/missing.jpg',
    status: 404,
    bytesOut: 310,
    ms: 3,
    error: 'NoSuchKey',
    reason: 'The specified key does not exist.',
  });
  assert.match(line, TIME);
  assert.match(
    line,
    / INFO {2}GET photos\/dir\/missing\.jpg → 404 NoSuchKey: The specified key does not exist\. requestId=0123456789ABCDEF operation=GetObject bytesOut=310 ms=3$/,
  );
  // An answer refused without an S3 error still says why.
  assert.match(
    formatPretty({ level: 30, msg: 's3 request', method: 'PUT', status: 503 }),
    /PUT \/ → 503 Service Unavailable/,
  );
  // Other lines: message, then key=value fields, quoted when they hold spaces.
  assert.match(
    formatPretty({ level: 40, time: 0, msg: 'SSE-S3 keyring is locked', keyringFile: '/a b/k.json', n: 2 }),
    / WARN {2}SSE-S3 keyring is locked keyringFile="\/a b\/k\.json" n=2$/,
  );
});

test('log_format = "pretty" and log_level in coffre.toml, and the environment over them', async (t) => {
  const server = await startServer({
    extraConfig: 'log_format = "pretty"\nlog_level = "info"',
    env: { COFFRE_LOG_LEVEL: '', COFFRE_LOG_FORMAT: '' },
  });
  t.after(() => server.cleanup());
  const s3 = server.client();
  t.after(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'pretty' }));
  await s3.send(new PutObjectCommand({ Bucket: 'pretty', Key: 'a.txt', Body: 'x' }));
  await rejects(() => s3.send(new GetObjectCommand({ Bucket: 'pretty', Key: 'missing' })), 'NoSuchKey', 404);
  await server.stop();
  const lines = server.stderr().trim().split('\n');
  assert.ok(
    lines.every((l) => TIME.test(l)),
    server.stderr(),
  );
  assert.ok(
    lines.some((l) => / INFO {2}PUT pretty\/a\.txt → 200 /.test(l)),
    server.stderr(),
  );
  assert.ok(
    lines.some((l) =>
      / INFO {2}GET pretty\/missing → 404 NoSuchKey: The specified key does not exist\./.test(l),
    ),
    server.stderr(),
  );
  assert.ok(lines.some((l) => / INFO {2}coffre node started /.test(l)));
  assert.ok(lines.at(-1)!.includes('coffre node stopped'));

  // warn in the file: no request lines; COFFRE_LOG_FORMAT=json wins over the file's pretty.
  const quiet = await startServer({
    dir: server.dir,
    env: { COFFRE_LOG_LEVEL: 'warn', COFFRE_LOG_FORMAT: 'json' },
  });
  const q = quiet.client();
  await q.send(new PutObjectCommand({ Bucket: 'pretty', Key: 'b.txt', Body: 'y' }));
  q.destroy();
  await quiet.stop();
  assert.doesNotMatch(quiet.stderr(), /s3 request|PUT pretty/);
});

test('a bad log_format or log_level stops the start with one line naming the key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-badlog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [extra, key] of [
    ['log_format = "colourful"', 'log_format'],
    ['log_level = "loud"', 'log_level'],
  ] as const) {
    const config = writeTestConfig(dir, PICKED_PORTS, 'token-token-token', { extraConfig: extra });
    const r = await runCoffre(['server', '-c', config], { COFFRE_LOG_LEVEL: '', COFFRE_LOG_FORMAT: '' });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^coffre: config: ${key} must be one of `));
  }
  const config = writeTestConfig(dir, PICKED_PORTS, 'token-token-token', {});
  const r = await runCoffre(['server', '-c', config], { COFFRE_LOG_FORMAT: 'xml' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^coffre: COFFRE_LOG_FORMAT must be one of pretty, json, not "xml"\n$/);
});
