// cli/node: `coffre node id`, `coffre node connect`, `coffre status` — a node's identity and its peers.
import type { Command } from 'commander';
import { loadConfig, resolveConfigPath } from '../config/config.js';
import { loadOrCreateNodeKey } from '../rpc/identity.js';
import type { ReplicationStatus } from '../rpc/metadata-replication.js';
import type { RebalanceStatus } from '../rpc/rebalance.js';
import { adminCall, adminTarget, print } from './admin-client.js';

interface NodeStatus {
  id: string;
  addr: string | null;
  up: boolean;
  lastSeen: string | null;
  self: boolean;
  role: string;
  zone: string | null;
  capacity: number | null;
}

interface ClusterStatus {
  nodeId: string;
  layoutVersion: number;
  nodes: NodeStatus[];
  rebalance?: RebalanceStatus | null;
  metadata?: ReplicationStatus | null;
}

// One line on this node's part in holding the metadata tables (and who leads them), and one per follower on
// the leader.
function describeMetadata(s: ClusterStatus): string[] {
  const m = s.metadata;
  if (!m || m.role === 'alone') return [];
  const leader = m.leader ? `${m.leader.slice(0, 16)} leads (term ${m.term})` : undefined;
  const noLeader =
    'no leader known: an election is under way, or too few metadata nodes are reachable (metadata calls get 503 until one leads)';
  if (m.role === 'none') return leader ? [`metadata: ${leader}`] : [];
  if (m.role === 'copy')
    return [
      m.resyncing
        ? 'metadata: a copy, being loaded from the leader'
        : `metadata: a copy, at log entry ${m.position.seq} (committed ${m.committed}); ${leader ?? noLeader}`,
    ];
  return [
    `metadata: led by this node (term ${m.term}), at log entry ${m.position.seq} (committed ${m.committed})`,
    ...m.copies.map(
      (c) =>
        `  copy on ${c.id.slice(0, 16)}: ${c.up ? `holds entry ${c.acked}` : `unreachable${c.error ? ` (${c.error})` : ''}`}`,
    ),
  ];
}

// One line on where this node's blocks stand against the current layout.
function describeRebalance(s: ClusterStatus): string[] {
  const r = s.rebalance;
  if (!r || s.layoutVersion === 0) return [];
  if (r.running) return ["blocks: moving this node's blocks to the nodes the layout picks for them"];
  if (r.settledVersion === s.layoutVersion) return [`blocks: in place for layout version ${s.layoutVersion}`];
  const left = r.lastPass?.left ?? 0;
  return left > 0
    ? [`blocks: ${left} wait to be moved (a node was unreachable; retried when it is back, and every minute)`]
    : ['blocks: not yet checked against this layout version'];
}

export function formatBytes(n: number | null): string {
  if (n === null) return '-';
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toFixed(1))} ${units[i]}`;
}

function describeStatus(s: ClusterStatus): string {
  const rows = s.nodes.map((n) =>
    [
      n.id.slice(0, 16) + (n.self ? '*' : ' '),
      n.addr ?? '-',
      n.role,
      n.zone ?? '-',
      formatBytes(n.capacity),
      n.up ? 'up' : 'DOWN',
      n.lastSeen ?? 'never',
    ].join('  '),
  );
  return [
    `layout version ${s.layoutVersion}  (* = this node)`,
    'ID                 ADDRESS  ROLE  ZONE  CAPACITY  STATE  LAST SEEN',
    ...rows,
    ...describeRebalance(s),
    ...describeMetadata(s),
  ].join('\n');
}

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description("this node's identity and its peers");
  node
    .command('id')
    .description('print this node as <node id>@<rpc address>, for other nodes to connect to')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals() as { config?: string };
      const config = loadConfig(resolveConfigPath(globals.config));
      const identity = loadOrCreateNodeKey(config.metadataDir);
      const id = identity.publicKey.toString('hex');
      identity.secretKey.fill(0);
      const addr = config.rpcPublicAddr ?? config.rpcBindAddr;
      print({ nodeId: id, addr, peer: `${id}@${addr}` }, Boolean(opts.json), (d: { peer: string }) => d.peer);
    });
  node
    .command('connect <peer>')
    .description('connect this node to another, given as <node id>@<host>:<port>')
    .option('--json', 'print JSON')
    .action(async (peer: string, opts: { json?: boolean }, cmd: Command) => {
      const status = (await adminCall(adminTarget(cmd), 'POST', '/v1/connect', { peer })) as ClusterStatus;
      print(
        status,
        Boolean(opts.json),
        (s: ClusterStatus) => `connected to ${peer.split('@')[0]!.slice(0, 16)}…\n${describeStatus(s)}`,
      );
    });
  program
    .command('status')
    .description('the nodes this node knows: roles, zones, capacity, up or down, last seen')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      print(await adminCall(adminTarget(cmd), 'GET', '/v1/status'), Boolean(opts.json), describeStatus);
    });
}
