// Starting a gateway: a backend that cannot be reached, refuses the credentials or lacks the bucket stops the
// start with one line saying what to change, and a non-zero exit; so does a [backend] table that is wrong, or
// a secret file others can read.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PICKED_PORTS, runCoffre, writeTestConfig } from '../helpers/server.js';
import { backendTable, startBackend, startGateway, type BackendTarget } from './gateway-helpers.js';

let backend: Awaited<ReturnType<typeof startBackend>>;
const dirs: string[] = [];

before(async () => {
  backend = await startBackend();
});

after(async () => {
  backend.client.destroy();
  await backend.server.stop();
  backend.server.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Starts `coffre server` with `table` as its [backend], expecting it to refuse; returns its error output. */
async function refusedStart(table: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-gateway-start-'));
  dirs.push(dir);
  const config = writeTestConfig(dir, PICKED_PORTS, randomBytes(12).toString('hex'), { extraConfig: table });
  const r = await runCoffre(['server', '--config', config]);
  assert.notEqual(r.code, 0, `the start should fail:\n${r.stdout}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, no stack trace:\n${r.stderr}`);
  return lines[0]!;
}

test('wrong credentials, an unreachable endpoint or a missing bucket: one line and a non-zero exit', async () => {
  const target = backend.target;
  const wrongSecret: BackendTarget = {
    ...target,
    secretAccessKey: 'wrong' + target.secretAccessKey.slice(5),
  };
  assert.match(await refusedStart(backendTable(wrongSecret)), /refused the credentials.*access_key_id/);
  const wrongKey: BackendTarget = { ...target, accessKeyId: 'GK000000000000000000000000' };
  assert.match(await refusedStart(backendTable(wrongKey)), /refused the credentials/);
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  const nowhere: BackendTarget = { ...target, endpoint: 'http://127.0.0.1:1' };
  assert.match(await refusedStart(backendTable(nowhere)), /unreachable.*\[backend\] endpoint/);
  const noBucket: BackendTarget = { ...target, bucket: 'no-such-bucket' };
  assert.match(await refusedStart(backendTable(noBucket)), /bucket does not exist/);
});

test('a [backend] table that is wrong is refused naming the key', async () => {
  const t = backend.target;
  assert.match(
    await refusedStart(backendTable(t).replace('type = "s3"', 'type = "ftp"')),
    /\[backend\] type must be "s3"/,
  );
  assert.match(await refusedStart(backendTable(t, 'no-slash')), /\[backend\] prefix must end with/);
  assert.match(
    await refusedStart(backendTable({ ...t, endpoint: 'ftp://example.org' })),
    /\[backend\] endpoint must be an http/,
  );
  assert.match(
    await refusedStart(backendTable(t, 'coffre/', ['secret_access_key_file = "secret"'])),
    /exactly one of secret_access_key and secret_access_key_file/,
  );
  assert.match(
    await refusedStart(backendTable(t, 'coffre/', ['colour = "blue"'])),
    /unknown key \[backend\] colour/,
  );
});

test('secret_access_key_file is read when private, refused when others can read it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-gateway-secret-'));
  dirs.push(dir);
  const secretFile = join(dir, 'backend-secret');
  writeFileSync(secretFile, `${backend.target.secretAccessKey}\n`, { mode: 0o644 });
  chmodSync(secretFile, 0o644);
  const table = backendTable(backend.target).replace(
    /secret_access_key = .*/,
    `secret_access_key_file = "${secretFile}"`,
  );
  assert.match(await refusedStart(table), /secret_access_key_file .* is readable by other users.*chmod 600/);
  chmodSync(secretFile, 0o600);
  const gateway = await startGateway(backend.target, { keyring: false, table });
  await gateway.stop();
});
