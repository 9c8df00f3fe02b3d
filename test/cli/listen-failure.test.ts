// A port the node cannot bind ends `coffre server`: it exits non-zero with one line naming the configuration key
// of that port and its address, after stopping whatever it had already started (no node left running with
// the other ports). And `coffre --version` prints the version from package.json.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  COFFRE_BIN,
  COFFRE_NODE_FLAGS,
  PICKED_PORTS,
  REPO_ROOT,
  runCoffre,
  writeTestConfig,
} from '../helpers/server.js';

function occupyPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('no port'));
      resolve({ server, port: address.port });
    });
  });
}

// Runs `coffre server` to its end (a node that keeps running fails the test by its timeout, and is killed).
function serverRun(
  t: TestContext,
  configPath: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...COFFRE_NODE_FLAGS, COFFRE_BIN, 'server', '--config', configPath],
      {
        env: { ...process.env, COFFRE_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const KEYS = [
  { key: 'rpc_bind_addr', port: 'rpc' },
  { key: '[s3_api] api_bind_addr', port: 's3' },
  { key: '[admin] api_bind_addr', port: 'admin' },
] as const;

for (const { key, port } of KEYS) {
  test(
    `a ${key} that cannot be bound stops the node: non-zero exit, one line naming ${key}`,
    { timeout: 60_000 },
    async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'coffre-listen-'));
      const taken = await occupyPort();
      t.after(() => {
        taken.server.close();
        rmSync(dir, { recursive: true, force: true });
      });
      const configPath = writeTestConfig(
        dir,
        { ...PICKED_PORTS, [port]: taken.port },
        randomBytes(24).toString('base64url'),
        {},
      );
      const run = await serverRun(t, configPath);
      assert.notEqual(run.code, 0, run.stderr);
      assert.doesNotMatch(run.stdout, /coffre is serving/);
      // The node's own log lines are JSON; what the CLI says is the one line that is not.
      const said = run.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));
      assert.equal(said.length, 1, run.stderr);
      const escaped = key.replace(/[[\]]/g, '\\$&');
      assert.match(
        said[0]!,
        new RegExp(`^coffre: cannot listen on 127\\.0\\.0\\.1:${taken.port} \\(${escaped} `),
      );
      assert.match(said[0]!, /already in use/);
      assert.match(said[0]!, new RegExp(`change ${escaped}$`));
      for (const other of KEYS.filter((k) => k.key !== key))
        assert.ok(!said[0]!.includes(other.key), said[0]);
    },
  );
}

test('coffre --version and -V print the version of package.json and exit 0', async () => {
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  for (const flag of ['--version', '-V']) {
    const r = await runCoffre([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `coffre ${version}\n`);
    assert.equal(r.stderr, '');
  }
});
