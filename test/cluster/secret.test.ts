// The rpc_secret is the cluster's network key: a node holding another secret cannot join (the handshake fails,
// it never shows up, the refusal is logged without any secret); a node without a secret does not start and says
// how to make one; a secret file other users can read is refused unless the operator explicitly allows it.
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { clusterStatus, createNode, newRpcSecret, startNode, type ClusterNode } from './cluster-helpers.js';

const nodes: ClusterNode[] = [];
after(async () => {
  for (const n of nodes) {
    await n.kill();
    n.cleanup();
  }
});

async function track(p: Promise<ClusterNode>): Promise<ClusterNode> {
  const n = await p;
  nodes.push(n);
  return n;
}

test('a node with a wrong rpc_secret cannot join, never shows up, and the refusal is logged without secrets', async () => {
  const good = newRpcSecret();
  const wrong = newRpcSecret();
  const member = await track(startNode({ secretConfig: `rpc_secret = "${good}"`, label: 'member' }));
  const intruder = await track(startNode({ secretConfig: `rpc_secret = "${wrong}"`, label: 'intruder' }));
  const memberId = (await member.id()).split('@')[0]!;
  const intruderId = (await intruder.id()).split('@')[0]!;

  const started = Date.now();
  const r = await intruder.cli(['node', 'connect', await member.id()]);
  assert.notEqual(r.code, 0, `connect must fail: ${r.stdout}`);
  assert.match(r.stderr, /cannot connect/);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.ok(Date.now() - started < 30_000);
  // And the other way round.
  const back = await member.cli(['node', 'connect', await intruder.id()]);
  assert.notEqual(back.code, 0);

  // Give the intruder's redials time to be tried and refused.
  await new Promise((res) => setTimeout(res, 1500));
  const seenByMember = await clusterStatus(member);
  assert.ok(!seenByMember.some((n) => n.id === intruderId && n.up), 'the intruder never shows up');
  const seenByIntruder = await clusterStatus(intruder);
  assert.ok(!seenByIntruder.some((n) => n.id === memberId && n.up));

  const log = member.stdout() + member.stderr();
  assert.match(log, /refused connection from 127\.0\.0\.1/);
  for (const n of [member, intruder]) {
    const all = n.stdout() + n.stderr();
    for (const secret of [good, wrong]) {
      assert.ok(!all.includes(secret), `${n.label}'s log holds no rpc_secret (hex)`);
      assert.ok(!all.includes(Buffer.from(secret, 'hex').toString('base64')), `${n.label}: no base64 secret`);
    }
  }
});

test('a node without an rpc_secret refuses to start and says how to make one', async () => {
  const node = await track(createNode({ label: 'nosecret', env: { COFFRE_RPC_SECRET: '' } }));
  await assert.rejects(node.start(), /exited with 1/);
  const lines = node.stderr().trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${node.stderr()}`);
  assert.match(lines[0]!, /rpc_secret/);
  assert.match(lines[0]!, /openssl rand -hex 32/);
  assert.doesNotMatch(node.stderr(), /\n\s+at /, 'no stack trace');

  // A malformed secret is refused the same way.
  const short = await track(createNode({ label: 'short', secretConfig: 'rpc_secret = "abcd"' }));
  await assert.rejects(short.start(), /exited/);
  assert.match(short.stderr(), /openssl rand -hex 32/);
  assert.ok(!short.stderr().includes('abcd'), 'the bad secret is not echoed');

  // The environment is a valid source.
  const fromEnv = await track(createNode({ label: 'envsecret', env: { COFFRE_RPC_SECRET: newRpcSecret() } }));
  await fromEnv.start();
});

test('an rpc_secret_file readable by others is refused unless allow_world_readable_secrets = true', async () => {
  const secret = newRpcSecret();
  const loose = await track(createNode({ label: 'loose', secretConfig: 'rpc_secret_file = "rpc_secret"' }));
  const file = join(loose.dir, 'rpc_secret');
  writeFileSync(file, `${secret}\n`);
  chmodSync(file, 0o644);
  await assert.rejects(loose.start(), /exited/);
  assert.match(loose.stderr(), /readable by other users/);
  assert.ok(!loose.stderr().includes(secret));

  chmodSync(file, 0o600);
  await loose.start();
  await loose.stop();

  const allowed = await track(
    createNode({
      label: 'allowed',
      secretConfig: 'rpc_secret_file = "rpc_secret"\nallow_world_readable_secrets = true',
    }),
  );
  const file2 = join(allowed.dir, 'rpc_secret');
  writeFileSync(file2, `${secret}\n`);
  chmodSync(file2, 0o644);
  await allowed.start();
});

test('rpc_secret and admin_token written in a coffre.toml readable by others are refused, by the server and the CLI', async () => {
  const secret = newRpcSecret();
  const node = await track(createNode({ label: 'inline', secretConfig: `rpc_secret = "${secret}"` }));
  chmodSync(node.configPath, 0o644);
  await assert.rejects(node.start(), /exited/);
  assert.match(
    node.stderr(),
    /holds rpc_secret and admin_token but is readable by other users \(mode 0644\)/,
  );
  assert.match(node.stderr(), /chmod 600/);
  assert.ok(!node.stderr().includes(secret), 'the secret is not echoed');
  const cli = await node.cli(['key', 'list']);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /readable by other users/);

  chmodSync(node.configPath, 0o600);
  await node.start();
  await node.stop();

  // Allowed explicitly, the same file is accepted.
  const allowed = await track(
    createNode({
      label: 'inline-allowed',
      secretConfig: `rpc_secret = "${secret}"\nallow_world_readable_secrets = true`,
    }),
  );
  chmodSync(allowed.configPath, 0o644);
  await allowed.start();
});
