// `coffre status` says first whether the cluster is healthy or degraded and, for each problem, what to do; then
// the SSE-S3 state, then one row per node — with the disk use of the file system holding its blocks — in
// columns that line up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startServer } from '../helpers/server.js';
import { formCluster, mustRun, newRpcSecret, startNode, waitFor } from '../cluster/cluster-helpers.js';
import { mustCli, operatorKey } from '../security/sse-s3-helpers.js';

/** [start, end) of each cell of a table line (cells are separated by two spaces or more). */
function cells(line: string): [number, number][] {
  return [...line.matchAll(/\S+(?: \S+)*/g)].map((m) => [m.index, m.index + m[0].length]);
}

/** Checks that every row's cells start (left columns) or end (right columns) where their header does. */
function assertAligned(out: string, rightAligned: string[]): void {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith('ID '));
  assert.ok(at >= 0, out);
  const header = lines[at]!;
  const headers = cells(header).map(([s, e]) => ({ name: header.slice(s, e), start: s, end: e }));
  const rows = lines.slice(at + 1).filter((l) => /^[0-9a-f]{16}/.test(l));
  assert.ok(rows.length > 0, out);
  for (const row of rows) {
    const c = cells(row);
    assert.equal(c.length, headers.length, `${row}\n${out}`);
    headers.forEach((h, i) => {
      if (rightAligned.includes(h.name)) assert.equal(c[i]![1], h.end, `${h.name} in\n${out}`);
      else assert.equal(c[i]![0], h.start, `${h.name} in\n${out}`);
    });
  }
}

test('a single node: healthy, SSE-S3 not set up, its disk use, aligned columns', async (t) => {
  const server = await startServer();
  t.after(() => server.cleanup());
  t.after(() => server.stop());
  const out = await mustCli(server, ['status']);
  assert.match(out, /^cluster: healthy \(as node [0-9a-f]{16} sees it, layout version 0\)\n/);
  assert.match(out, /^SSE-S3: not set up/m);
  assert.match(out, /^ID +ADDRESS +ROLE +ZONE +CAPACITY +STATE +DISK USED +LAST SEEN$/m);
  assert.match(out, /\d+(\.\d)? [KMGTP]?B of \d+(\.\d)? [KMGTP]?B \(\d+%\)/);
  assertAligned(out, ['CAPACITY', 'DISK USED']);
  const json = JSON.parse(await mustCli(server, ['status', '--json'])) as {
    health: { state: string; problems: unknown[] };
    nodes: { disk: { total: number; free: number } | null }[];
  };
  assert.equal(json.health.state, 'healthy');
  assert.ok(json.nodes[0]!.disk && json.nodes[0]!.disk.total > 0 && json.nodes[0]!.disk.free > 0);
});

test('a locked SSE-S3 keyring makes the node degraded, with the command that unlocks it', async (t) => {
  const operator = await operatorKey('status-reader');
  let server = await startServer();
  t.after(() => server.cleanup());
  await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  assert.match(await mustCli(server, ['status']), /^SSE-S3: unlocked, 1 master key, current /m);
  await server.stop();
  server = await startServer({ dir: server.dir });
  t.after(() => server.stop());
  const out = await mustCli(server, ['status']);
  assert.match(out, /^cluster: DEGRADED /);
  assert.match(
    out,
    /^ {2}- the SSE-S3 keyring is locked: SSE-S3 requests get 503\n {4}to do: run `coffre sse-s3 unlock --gpg`/m,
  );
  assert.match(out, /^SSE-S3: locked/m);
});

test('in a cluster: every node with its disk, and a node that goes down is reported with what to do', async (t) => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const a = await startNode({ label: 'status-a', secretConfig: secret });
  const b = await startNode({ label: 'status-b', secretConfig: secret });
  t.after(() => {
    a.cleanup();
    b.cleanup();
  });
  t.after(async () => {
    await a.stop();
    await b.stop();
  });
  await formCluster(a, [
    { node: a, zone: 'z1' },
    { node: b, zone: 'z2' },
  ]);
  const both = await mustRun(a, ['status']);
  assert.match(both, /^cluster: healthy /);
  assertAligned(both, ['CAPACITY', 'DISK USED']);
  const bId = (await b.id()).slice(0, 16);
  assert.match(both, new RegExp(`^${bId} .* storage .* up .* of .*\\(\\d+%\\)`, 'm'));
  await b.stop();
  let out = '';
  await waitFor(async () => {
    out = await mustRun(a, ['status']);
    return /DEGRADED/.test(out);
  }, 'the first node reports the second one down');
  assert.match(out, new RegExp(`- storage node ${bId} \\(zone z2\\) is down`));
  assert.match(
    out,
    new RegExp(`to do: start it again; if it is gone for good: \`coffre layout remove ${bId}\``),
  );
  assert.match(out, new RegExp(`^${bId} .* DOWN .* - `, 'm'));
  assertAligned(out, ['CAPACITY', 'DISK USED']);
});
