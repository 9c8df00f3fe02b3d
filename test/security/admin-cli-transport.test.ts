// The CLI never sends the admin token (nor, for `sse-s3 unlock`, master keys) over plain HTTP to a node that is
// not on loopback: it refuses before connecting. And it chooses TLS from the configuration, so a certificate
// left by an earlier `--tls-self-signed` run does not break admin commands against a node serving plain HTTP.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateSelfSignedCertificate } from '../../src/api/tls.js';
import { makeNamespace } from '../helpers/netns.js';
import { runCoffre, startServerFor } from '../helpers/server.js';

test('admin commands to a plain-HTTP admin address off loopback are refused before a byte is sent', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
  const ns = makeNamespace(t);
  if (!ns) return t.skip('network namespaces are not available here');
  // A listener on the host side of the veth pair (an address of this test's own): it records every byte.
  const received: Buffer[] = [];
  const sockets: Socket[] = [];
  const listener = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (d: Buffer) => received.push(d));
  });
  await new Promise<void>((r) => listener.listen(0, ns.hostAddr, () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => listener.close(() => r()));
  });
  const port = (listener.address() as { port: number }).port;

  const server = await startServerFor(t);
  const remoteConfig = join(server.dir, 'remote.toml');
  writeFileSync(
    remoteConfig,
    readFileSync(server.configPath, 'utf8').replace(
      /^api_bind_addr = "127\.0\.0\.1:(\d+)"$/gm,
      (line, p: string) =>
        Number(p) === server.adminPort ? `api_bind_addr = "${ns.hostAddr}:${port}"` : line,
    ),
    { mode: 0o600 },
  );
  assert.ok(readFileSync(remoteConfig, 'utf8').includes(`${ns.hostAddr}:${port}`));
  for (const args of [
    ['bucket', 'list'],
    ['key', 'create', 'someone'],
    ['sse-s3', 'status'],
  ]) {
    const r = await runCoffre([...args, '--config', remoteConfig]);
    assert.notEqual(r.code, 0, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /refusing to send the admin token over plain HTTP/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
  }
  assert.equal(sockets.length, 0, 'the CLI connected');
  assert.equal(Buffer.concat(received).length, 0);
});

test('a certificate left by an earlier --tls-self-signed run does not break admin commands on a plain node', async (t) => {
  const server = await startServerFor(t);
  const before = await runCoffre(['bucket', 'list', '--config', server.configPath]);
  assert.equal(before.code, 0, before.stderr);
  const dir = join(server.dir, 'tls');
  mkdirSync(dir, { recursive: true });
  await generateSelfSignedCertificate(dir, []);
  const after = await runCoffre(['bucket', 'list', '--config', server.configPath]);
  assert.equal(after.code, 0, after.stderr);
  assert.equal(after.stdout, before.stdout);
});
