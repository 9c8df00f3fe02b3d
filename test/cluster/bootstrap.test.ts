// Nodes find each other without `node connect`: a node started with bootstrap_peers dials them, and a node
// learns of the others from its peers' lists, so three nodes told only of the first one all see each other up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterStatus, newRpcSecret, startNode, waitFor, type ClusterNode } from './cluster-helpers.js';

test('bootstrap_peers and exchanged peer lists connect every node to every other', async () => {
  const secret = `rpc_secret = "${newRpcSecret()}"`;
  const nodes: ClusterNode[] = [];
  try {
    const first = await startNode({ secretConfig: secret, label: 'first' });
    nodes.push(first);
    const bootstrap = `bootstrap_peers = ["${await first.id()}"]`;
    for (const label of ['second', 'third'])
      nodes.push(await startNode({ secretConfig: `${secret}\n${bootstrap}`, label }));
    const ids = await Promise.all(nodes.map(async (n) => (await n.id()).split('@')[0]!));
    for (const [i, node] of nodes.entries()) {
      await waitFor(async () => {
        const up = new Set((await clusterStatus(node)).filter((s) => s.up && !s.self).map((s) => s.id));
        return ids.every((id, j) => j === i || up.has(id));
      }, `${node.label} sees the two others up`);
    }
    // second and third were told only of first: they know of each other through its peer list.
    const seenBySecond = await clusterStatus(nodes[1]!);
    assert.ok(seenBySecond.find((s) => s.id === ids[2])?.up);
  } finally {
    for (const n of nodes) {
      await n.stop();
      n.cleanup();
    }
  }
});
