// cli/node: `coffre node id`, `coffre node connect`, `coffre status` — a node's identity and its peers.
import type { Command } from 'commander';
import { loadConfig, resolveConfigPath } from '../config/config.js';
import { loadOrCreateNodeKey } from '../rpc/identity.js';
import type { ReplicationStatus } from '../rpc/metadata-replication.js';
import type { RebalanceStatus } from '../rpc/rebalance.js';
import type { ResyncStatus } from '../rpc/resync.js';
import type { ScrubPass, ScrubStatus } from '../rpc/scrub.js';
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
  resync?: ResyncStatus | null;
  scrub?: ScrubStatus | null;
  health?: { degraded: boolean; problems: string[]; advice: string[] };
}

// The cluster's health as this node sees it: what is wrong and what to do.
function describeHealth(s: ClusterStatus): string[] {
  const h = s.health;
  if (!h || s.layoutVersion === 0) return [];
  if (!h.degraded) return ['cluster: healthy'];
  return [
    'cluster: DEGRADED',
    ...h.problems.map((p) => `  - ${p}`),
    ...(h.advice.length > 0 ? ['what to do:', ...h.advice.map((a) => `  - ${a}`)] : []),
  ];
}

// The copies this node's writes owe other nodes, and what scrub found on this node.
function describeBlocks(s: ClusterStatus): string[] {
  const lines: string[] = [];
  const r = s.resync;
  if (r && r.nodes.length > 0) {
    for (const n of r.nodes)
      lines.push(
        `resync: ${n.pending} block copies queued here for ${n.node.slice(0, 16)}` +
          (n.lastError ? ` (last try: ${n.lastError})` : ''),
      );
  }
  if (r && r.copied > 0) lines.push(`resync: ${r.copied} copies written since this node started`);
  const sc = s.scrub;
  const found = (p: ScrubPass) =>
    `${p.checked} blocks checked, ${p.corrupt} damaged, ${p.repaired} repaired, ${p.unrepairable} unrepairable, ` +
    `${p.copiesGiven} missing copies given to other nodes`;
  if (sc?.running && sc.current)
    lines.push(
      `scrub: running since ${new Date(sc.current.startedAt).toISOString()}: ${found(sc.current)} so far`,
    );
  if (sc?.lastPass?.finishedAt)
    lines.push(
      `scrub: last pass ended ${new Date(sc.lastPass.finishedAt).toISOString()}: ${found(sc.lastPass)}`,
    );
  if (sc && !sc.running && sc.nextAt) lines.push(`scrub: next pass ${new Date(sc.nextAt).toISOString()}`);
  return lines;
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
    ...describeBlocks(s),
    ...describeHealth(s),
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
  node
    .command('forget <id>')
    .description("drop a dead node that is no longer in the layout from every node's peers (no more redials)")
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const result = (await adminCall(adminTarget(cmd), 'POST', '/v1/forget', { nodeId: id })) as {
        forgotten: string;
        told: string[];
        notTold: string[];
      };
      print(result, Boolean(opts.json), (r: typeof result) =>
        [
          `forgot ${r.forgotten.slice(0, 16)}… here and on ${r.told.length} other nodes`,
          ...(r.notTold.length > 0
            ? [
                `not told (unreachable or refused): ${r.notTold.map((p) => p.slice(0, 16)).join(', ')}; ` +
                  'run `coffre node forget` there once they are up',
              ]
            : []),
        ].join('\n'),
      );
    });
  program
    .command('scrub')
    .description('check every block file of this node against its hash now, repairing damaged copies')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      print(
        await adminCall(adminTarget(cmd), 'POST', '/v1/scrub', {}),
        Boolean(opts.json),
        () => 'scrub: pass started (`coffre status` shows its progress)',
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
