// The embedded default: `coffre server` with no configuration creates ./coffre-data with fresh secrets and a
// node key, prints a working access key once, and a second start reuses all of it. The node is told to bind port
// 0 (--s3-bind and the like), so that it never meets another node on the default ports; the configuration it
// writes still names them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { COFFRE_BIN, COFFRE_NODE_FLAGS, boundPorts } from '../helpers/server.js';

const ANY_PORT = ['--s3-bind', '127.0.0.1:0', '--admin-bind', '127.0.0.1:0', '--rpc-bind', '127.0.0.1:0'];

// Started as the installed command is: the file itself, whose sh line starts node with the server's flags.
async function startInCwd(
  cwd: string,
): Promise<{ out: () => string; cmdline: string[]; s3Port: number; stop: () => Promise<void> }> {
  const env = { ...process.env };
  delete env.COFFRE_CONFIG;
  const child = spawn(COFFRE_BIN, ['server', ...ANY_PORT], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const ports = await new Promise<{ s3: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start:\n${out}\n${err}`)), 20_000);
    child.stdout.on('data', () => {
      const bound = boundPorts(out);
      if (bound) {
        clearTimeout(timer);
        resolve(bound);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}:\n${out}\n${err}`)));
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    out: () => out,
    cmdline: readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0'),
    s3Port: ports.s3,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

test('first start creates coffre-data with fresh secrets, a 0600 node key and a working access key; a second start reuses them', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'coffre-first-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const first = await startInCwd(cwd);
  let configText: string;
  try {
    const out = first.out();
    const id = /AWS_ACCESS_KEY_ID=(\S+)/.exec(out)?.[1];
    const secret = /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(out)?.[1];
    assert.ok(id && secret, out);
    assert.match(out, new RegExp(`http://127\\.0\\.0\\.1:${first.s3Port}`));
    assert.notEqual(first.s3Port, 0);
    // The launcher line ran: the same process (exec, so signals reach the server) carries node's flags.
    assert.deepEqual(first.cmdline.slice(1, 1 + COFFRE_NODE_FLAGS.length), [...COFFRE_NODE_FLAGS]);
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${first.s3Port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: id, secretAccessKey: secret },
    });
    const list = await client.send(new ListBucketsCommand({}));
    assert.deepEqual(list.Buckets ?? [], []);
    const configPath = join(cwd, 'coffre-data', 'coffre.toml');
    configText = readFileSync(configPath, 'utf8');
    assert.match(configText, /^rpc_secret = "[0-9a-f]{64}"$/m);
    // The defaults are written as they are; the flags changed this run only.
    assert.match(configText, /^api_bind_addr = "127\.0\.0\.1:3900"$/m);
    assert.match(configText, /^rpc_bind_addr = "127\.0\.0\.1:3901"$/m);
    assert.match(configText, /^admin_token = "[A-Za-z0-9_-]{20,}"$/m);
    assert.equal(statSync(configPath).mode & 0o777, 0o600);
    const nodeKey = join(cwd, 'coffre-data', 'meta', 'node_key');
    assert.equal(statSync(nodeKey).mode & 0o777, 0o600);
    // The secret is printed, never logged or written in clear beside the config.
    assert.ok(!configText.includes(secret));
  } finally {
    await first.stop();
  }
  const second = await startInCwd(cwd);
  try {
    assert.doesNotMatch(second.out(), /AWS_SECRET_ACCESS_KEY/);
    assert.equal(readFileSync(join(cwd, 'coffre-data', 'coffre.toml'), 'utf8'), configText);
  } finally {
    await second.stop();
  }
});
