// rpc/layout: the cluster layout — which nodes store data (zone, capacity) and which are gateways — with
// staged changes applied as a new version, as in Garage. It decides where things live: blocks go to
// `replication_factor` storage nodes chosen by weighted rendezvous hashing (capacity-weighted, spread over
// zones first), and the metadata tables live on the layout's metadata node (the first storage node by id when
// the first layout is applied, kept there by later versions) with copies on `replication_factor - 1` other
// storage nodes (rpc/metadata-replication). A layout that takes the role from the metadata node hands it to
// the copy that holds the most (chosen by the node applying the layout).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { dict, int, list, opt, record, str, type Schema } from './messages.js';

export const LAYOUT_FORMAT_VERSION = 1;

export interface NodeRole {
  zone: string;
  // Bytes this node offers for data; null for a gateway (serves the API, stores nothing).
  capacity: number | null;
}

export interface ClusterLayout {
  format: number;
  version: number;
  roles: Record<string, NodeRole>; // by node id
  staged: Record<string, NodeRole | null>; // null: remove the node's role
  // The node holding the metadata tables, recorded by applyStaged. Absent in layouts written before it was
  // recorded: then it is the first storage node by id, as it was when they were applied.
  metadata?: string;
  // The storage nodes holding copies of the metadata tables, recorded by applyStaged: kept from one version to
  // the next while they stay storage nodes, so that adding a node does not rebuild a copy elsewhere. Absent in
  // layouts written before copies existed: then they are chosen as metadataReplicas says.
  metadataCopies?: string[];
  // Nodes that had a role in an earlier version and have none now: they may still hand the blocks they hold
  // to the nodes that hold them now (rpc/rebalance), and nothing else (Cluster.mayCall).
  retired?: string[];
}

export function emptyLayout(): ClusterLayout {
  return { format: LAYOUT_FORMAT_VERSION, version: 0, roles: {}, staged: {} };
}

export function storageNodes(layout: ClusterLayout): string[] {
  return Object.entries(layout.roles)
    .filter(([, r]) => r.capacity !== null && r.capacity > 0)
    .map(([id]) => id)
    .sort();
}

export function isGateway(layout: ClusterLayout, nodeId: string): boolean {
  const role = layout.roles[nodeId];
  return role !== undefined && role.capacity === null;
}

// The node that holds the metadata tables, or undefined for a node standing alone (no layout applied).
export function metadataNode(layout: ClusterLayout): string | undefined {
  const storage = storageNodes(layout);
  return layout.metadata !== undefined && storage.includes(layout.metadata) ? layout.metadata : storage[0];
}

function score(hash: string, nodeId: string, capacity: number): number {
  const h = createHash('sha256').update(hash).update(nodeId).digest();
  // Uniform in (0, 1], then weighted: the node with the highest -capacity / ln(u) wins (weighted rendezvous).
  const u = (h.readUIntBE(0, 6) + 1) / 2 ** 48;
  return -capacity / Math.log(u);
}

interface Ranked {
  id: string;
  zone: string;
}

// The first `count` of `ranked` (best first), nodes in zones not yet `taken` before the others.
function pickSpread(ranked: Ranked[], count: number, taken: Set<string> = new Set()): string[] {
  const chosen: string[] = [];
  const zones = new Set(taken);
  for (const n of ranked) {
    if (chosen.length >= count) break;
    if (!zones.has(n.zone)) {
      chosen.push(n.id);
      zones.add(n.zone);
    }
  }
  for (const n of ranked) {
    if (chosen.length >= count) break;
    if (!chosen.includes(n.id)) chosen.push(n.id);
  }
  return chosen;
}

function ranked(layout: ClusterLayout, name: string, except?: string): Ranked[] {
  return storageNodes(layout)
    .filter((id) => id !== except)
    .map((id) => ({ id, zone: layout.roles[id]!.zone, s: score(name, id, layout.roles[id]!.capacity!) }))
    .sort((a, b) => b.s - a.s);
}

// The storage nodes that hold block `hash`: distinct zones first, then by score.
export function blockNodes(layout: ClusterLayout, hash: string, replicationFactor: number): string[] {
  return pickSpread(ranked(layout, hash), replicationFactor);
}

/**
 * The nodes holding the metadata tables: the metadata node first, then the storage nodes holding copies of
 * them, `replicationFactor` in all (fewer when the layout has fewer storage nodes), in zones other than the
 * metadata node's first. Empty for a node standing alone.
 */
export function metadataReplicas(layout: ClusterLayout, replicationFactor: number): string[] {
  const holder = metadataNode(layout);
  if (holder === undefined) return [];
  if (layout.metadataCopies !== undefined) {
    const storage = storageNodes(layout);
    return [holder, ...layout.metadataCopies.filter((id) => id !== holder && storage.includes(id))];
  }
  return [holder, ...chooseCopies(layout, holder, [], replicationFactor - 1)];
}

// `kept`, then more storage nodes up to `count` copies, in zones other than the holder's and theirs first.
function chooseCopies(layout: ClusterLayout, holder: string, kept: string[], count: number): string[] {
  const zones = new Set([holder, ...kept].map((id) => layout.roles[id]?.zone ?? ''));
  const candidates = ranked(layout, 'metadata', holder).filter((n) => !kept.includes(n.id));
  return [...kept, ...pickSpread(candidates, count - kept.length, zones)].slice(0, Math.max(0, count));
}

export function stageRole(layout: ClusterLayout, nodeId: string, role: NodeRole | null): ClusterLayout {
  if (!/^[0-9a-f]{64}$/.test(nodeId)) throw new UserError(`not a node id (64 hex digits): ${nodeId}`);
  return { ...layout, staged: { ...layout.staged, [nodeId]: role } };
}

/** The node holding the metadata is leaving the storage nodes: the layout must name who takes its place. */
export class MetadataMoveError extends UserError {
  constructor(readonly holder: string) {
    super(
      `node ${holder.slice(0, 16)}… holds the cluster's metadata and this replication_factor keeps no copy ` +
        'of it elsewhere: it must stay a storage node (unstage this change with `coffre layout assign` for ' +
        'that node)',
    );
  }
}

// Applies the staged changes as version `expectedVersion` (which must be the current version + 1, so two
// operators cannot apply conflicting changes unknowingly). When the metadata node stops being a storage node,
// `successor` (one of its copies, see metadataReplicas) takes the role; without one, that is refused. The
// copies of the metadata (replicationFactor - 1 of them) are those of `layout` still storing, and more as needed.
export function applyStaged(
  layout: ClusterLayout,
  expectedVersion: number,
  opts: { successor?: string; replicationFactor?: number } = {},
): ClusterLayout {
  if (expectedVersion !== layout.version + 1) {
    throw new UserError(
      `layout apply --version must be ${layout.version + 1} (the current version is ${layout.version})`,
    );
  }
  if (Object.keys(layout.staged).length === 0)
    throw new UserError('no staged layout changes to apply (use `coffre layout assign`)');
  const next = nextRoles(layout, expectedVersion);
  const holder = metadataNode(layout);
  const storage = storageNodes(next);
  let metadata = holder ?? storage[0];
  if (holder !== undefined && !storage.includes(holder)) {
    if (opts.successor === undefined || !storage.includes(opts.successor))
      throw new MetadataMoveError(holder);
    metadata = opts.successor;
  }
  if (metadata === undefined) return next;
  const previous = metadataReplicas(layout, opts.replicationFactor ?? 1).filter(
    (id) => id !== metadata && storage.includes(id),
  );
  const copies = chooseCopies(next, metadata, previous, (opts.replicationFactor ?? 1) - 1);
  return { ...next, metadata, metadataCopies: copies };
}

/** The layout the staged changes make, before the metadata node is settled (see applyStaged). */
export function nextRoles(layout: ClusterLayout, version: number): ClusterLayout {
  const roles = { ...layout.roles };
  for (const [id, role] of Object.entries(layout.staged)) {
    if (role === null) delete roles[id];
    else roles[id] = role;
  }
  if (Object.keys(roles).length > 0 && Object.values(roles).every((r) => r.capacity === null)) {
    throw new UserError('a layout needs at least one storage node (assign one with --capacity)');
  }
  const retired = [...new Set([...(layout.retired ?? []), ...Object.keys(layout.roles)])]
    .filter((id) => !(id in roles))
    .sort();
  return {
    format: LAYOUT_FORMAT_VERSION,
    version,
    roles,
    staged: {},
    ...(retired.length > 0 ? { retired } : {}),
  };
}

export function parseCapacity(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?$/i.exec(text.trim());
  if (!m) throw new UserError(`capacity must look like 100G, 1T or 500000000, got "${text}"`);
  const unit = m[2]!.toUpperCase();
  const base = m[3]?.toLowerCase().startsWith('i') ? 1024 : 1000;
  const power = ' KMGTP'.indexOf(unit === '' ? ' ' : unit);
  return Math.round(Number(m[1]) * base ** power);
}

export class LayoutFile {
  private readonly path: string;

  constructor(metadataDir: string) {
    this.path = join(metadataDir, 'cluster_layout.json');
  }

  load(): ClusterLayout {
    if (!existsSync(this.path)) return emptyLayout();
    let value: { format?: unknown };
    try {
      value = JSON.parse(readFileSync(this.path, 'utf8')) as { format?: unknown };
    } catch (err) {
      throw new UserError(`${this.path}: not a cluster layout (${(err as Error).message})`);
    }
    if (value?.format !== LAYOUT_FORMAT_VERSION)
      throw new Error(`cluster layout file has unknown format ${String(value?.format)}`);
    try {
      return decodeLayout(value, this.path);
    } catch (err) {
      throw new UserError((err as Error).message);
    }
  }

  save(layout: ClusterLayout): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(layout, null, 2), { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}

// A layout as a peer sends it (layout/push, layout/get) or as it was saved: checked field by field.
const NODE_ID = str(64, /^[0-9a-f]{64}$/);
const nodeRole: Schema<NodeRole> = record({
  zone: str(255),
  capacity: (v, where) => (v === null ? null : int(0)(v, where)),
});
const layoutSchema: Schema<ClusterLayout> = record({
  format: int(LAYOUT_FORMAT_VERSION, LAYOUT_FORMAT_VERSION),
  version: int(0),
  roles: dict(nodeRole, NODE_ID, 1000),
  staged: dict((v, where) => (v === null ? null : nodeRole(v, where)), NODE_ID, 1000),
  metadata: opt(NODE_ID),
  metadataCopies: opt(list(NODE_ID, 1000)),
  retired: opt(list(NODE_ID, 10_000)),
});

export function decodeLayout(value: unknown, where: string): ClusterLayout {
  return layoutSchema(value, where);
}
