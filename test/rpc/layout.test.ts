// The layout's placement rules that decide where data lives: the metadata node stays where the first layout
// put it, and blocks go to the nodes rendezvous hashing picks (most of them stay put when a node joins).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyStaged,
  blockNodes,
  emptyLayout,
  metadataNode,
  metadataReplicas,
  stageRole,
  type ClusterLayout,
  type NodeRole,
} from '../../src/rpc/layout.js';
import { UserError } from '../../src/util/errors.js';

const id = (c: string) => c.repeat(64);
const storage = { zone: 'z1', capacity: 1e12 };

function withRoles(
  roles: Record<string, NodeRole | null>,
  from = emptyLayout(),
  opts: { successor?: string; replicationFactor?: number } = {},
): ClusterLayout {
  let layout = from;
  for (const [node, role] of Object.entries(roles)) layout = stageRole(layout, node, role);
  return applyStaged(layout, layout.version + 1, opts);
}

test('the metadata node is the first storage node by id, and stays there when a node with a lower id joins', () => {
  const first = withRoles({ [id('b')]: storage, [id('c')]: storage });
  assert.equal(first.metadata, id('b'));
  assert.equal(metadataNode(first), id('b'));
  const grown = withRoles({ [id('a')]: storage }, first);
  assert.equal(metadataNode(grown), id('b'), 'a node sorting first does not take the metadata over');
  assert.equal(grown.version, 2);
});

test('a layout written before the metadata node was recorded keeps its first storage node as metadata node', () => {
  const old = withRoles({ [id('b')]: storage, [id('c')]: storage });
  delete old.metadata;
  assert.equal(metadataNode(old), id('b'));
  const grown = withRoles({ [id('a')]: storage }, old);
  assert.equal(grown.metadata, id('b'));
});

test('removing the metadata node is refused; removing another storage node is not', () => {
  const layout = withRoles({ [id('b')]: storage, [id('c')]: storage });
  assert.throws(
    () => withRoles({ [id('b')]: null }, layout),
    (err: Error) => err instanceof UserError && /holds the cluster's metadata/.test(err.message),
  );
  assert.throws(() => withRoles({ [id('b')]: { zone: 'z1', capacity: null } }, layout), UserError);
  const smaller = withRoles({ [id('c')]: null }, layout);
  assert.deepEqual(Object.keys(smaller.roles), [id('b')]);
});

test('a node joining takes about its share of blocks; the others stay where they were', () => {
  const two = withRoles({ [id('a')]: storage, [id('b')]: storage });
  const three = withRoles({ [id('c')]: storage }, two);
  let moved = 0;
  const hashes = Array.from({ length: 600 }, (_, i) => i.toString(16).padStart(64, '0'));
  for (const h of hashes) {
    const [before] = blockNodes(two, h, 1);
    const [after] = blockNodes(three, h, 1);
    if (before !== after) {
      moved++;
      assert.equal(after, id('c'), 'a block that moves, moves to the new node');
    }
  }
  assert.ok(moved > 600 / 3 - 60 && moved < 600 / 3 + 60, `moved ${moved} of 600`);
});

test('metadata copies: replication_factor - 1 of them, other zones first, kept while nodes join', () => {
  const rf3 = { replicationFactor: 3 };
  const zone = (z: string) => ({ zone: z, capacity: 1e12 });
  const first = withRoles(
    { [id('a')]: zone('z1'), [id('b')]: zone('z1'), [id('c')]: zone('z2') },
    undefined,
    rf3,
  );
  assert.equal(first.metadata, id('a'));
  assert.equal(first.metadataCopies!.length, 2);
  assert.equal(first.metadataCopies![0], id('c'), 'the copy in another zone comes first');
  assert.deepEqual(metadataReplicas(first, 3), [id('a'), ...first.metadataCopies!]);
  // Nodes joining, even in new zones, do not move a copy (it would have to be rebuilt from a snapshot).
  const grown = withRoles({ [id('d')]: zone('z3'), [id('e')]: zone('z4') }, first, rf3);
  assert.deepEqual(grown.metadataCopies, first.metadataCopies);
  // A copy leaving is replaced by another storage node.
  const shrunk = withRoles({ [id('c')]: null }, grown, rf3);
  assert.equal(shrunk.metadataCopies!.length, 2);
  assert.ok(!shrunk.metadataCopies!.includes(id('c')));
  assert.ok(shrunk.metadataCopies!.includes(first.metadataCopies![1]!));
  // With replication_factor = 1 there is none, and the metadata node cannot leave.
  const single = withRoles({ [id('a')]: zone('z1'), [id('b')]: zone('z2') });
  assert.deepEqual(single.metadataCopies, []);
  assert.deepEqual(metadataReplicas(single, 1), [id('a')]);
});

test('the metadata node leaves: the successor named takes the role, and its place as a copy is filled', () => {
  const rf2 = { replicationFactor: 2 };
  const zone = (z: string) => ({ zone: z, capacity: 1e12 });
  const first = withRoles(
    { [id('a')]: zone('z1'), [id('b')]: zone('z2'), [id('c')]: zone('z3') },
    undefined,
    rf2,
  );
  const copy = first.metadataCopies![0]!;
  assert.throws(() => withRoles({ [id('a')]: null }, first, rf2), /holds the cluster's metadata/);
  assert.throws(
    () => withRoles({ [id('a')]: null }, first, { ...rf2, successor: id('a') }),
    /holds the cluster's metadata/,
    'the successor must stay a storage node',
  );
  const moved = withRoles({ [id('a')]: null }, first, { ...rf2, successor: copy });
  assert.equal(moved.metadata, copy);
  assert.equal(moved.metadataCopies!.length, 1);
  assert.ok(![copy, id('a')].includes(moved.metadataCopies![0]!));
});

test('a layout written before copies were recorded has them chosen by the layout', () => {
  const old = withRoles({
    [id('a')]: { zone: 'z1', capacity: 1e12 },
    [id('b')]: { zone: 'z2', capacity: 1e12 },
  });
  delete old.metadataCopies;
  assert.deepEqual(metadataReplicas(old, 2), [id('a'), id('b')]);
  assert.deepEqual(metadataReplicas(old, 1), [id('a')]);
});
