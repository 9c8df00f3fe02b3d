// cli/node: `coffre node id`, `coffre node connect`, `coffre node init-config`, `coffre status` — a node's
// identity, its peers, and the configuration of a node that joins them.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig, parseBindAddress, resolveConfigPath, type CoffreConfig } from '../config/config.js';
import { nodeConfigText, writeNewConfig } from '../config/init.js';
import { loadOrCreateNodeKey, parseHostPort, parsePeerAddress, parseRpcSecret } from '../rpc/identity.js';
import type { DiskUse } from '../rpc/cluster.js';
import type { Health, StatusNode } from '../api/admin/health.js';
import type { SseS3Status } from '../sse/sse-s3-keys.js';
import { UserError } from '../util/errors.js';
import { formatTable, type Column } from './table.js';
import type { ReplicationStatus } from '../rpc/metadata-replication.js';
import type { RebalanceStatus } from '../rpc/rebalance.js';
import type { ResyncStatus } from '../rpc/resync.js';
import type { ScrubPass, ScrubStatus } from '../rpc/scrub.js';
import { adminCall, adminTarget, print } from './admin-client.js';

interface ClusterStatus {
  nodeId: string;
  layoutVersion: number;
  nodes: StatusNode[];
  rebalance?: RebalanceStatus | null;
  metadata?: ReplicationStatus | null;
  resync?: ResyncStatus | null;
  scrub?: ScrubStatus | null;
  sseS3?: SseS3Status | null;
  health?: Health;
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
  if (r.running) {
    const p = r.currentPass;
    return [
      "blocks: moving this node's blocks to the nodes the layout picks for them" +
        (p ? ` (so far ${p.checked} looked at, ${p.copied} copied, ${p.removed} removed)` : ''),
    ];
  }
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

/** `12.3 GB of 98.4 GB (13%)` used on the file system holding a node's blocks; `-` when not known. */
function describeDisk(disk: DiskUse | null | undefined): string {
  if (!disk || disk.total === 0) return '-';
  const used = disk.total - disk.free;
  return `${formatBytes(used)} of ${formatBytes(disk.total)} (${Math.round((used / disk.total) * 100)}%)`;
}

// The columns of `coffre status`, in order: one entry per column.
const NODE_COLUMNS: readonly Column<StatusNode>[] = [
  { header: 'ID', value: (n) => n.id.slice(0, 16) + (n.self ? '*' : '') },
  { header: 'ADDRESS', value: (n) => n.addr ?? '-' },
  { header: 'ROLE', value: (n) => n.role },
  { header: 'ZONE', value: (n) => n.zone ?? '-' },
  { header: 'CAPACITY', value: (n) => formatBytes(n.capacity), align: 'right' },
  { header: 'STATE', value: (n) => (n.up ? 'up' : 'DOWN') },
  { header: 'DISK USED', value: (n) => describeDisk(n.disk), align: 'right' },
  { header: 'LAST SEEN', value: (n) => (n.self ? 'now' : (n.lastSeen ?? 'never')) },
];

function describeSseS3(k: SseS3Status | null | undefined): string[] {
  if (!k) return [];
  if (k.damaged) return [`SSE-S3: keyring damaged (${k.keyringFile})`];
  if (!k.configured) return ['SSE-S3: not set up (`coffre sse-s3 init --recipient KEY` to enable it)'];
  if (!k.unlocked) return [`SSE-S3: locked (keyring ${k.keyringFile})`];
  const count = k.keys?.length ?? 0;
  return [`SSE-S3: unlocked, ${count} master key${count === 1 ? '' : 's'}, current ${k.current ?? '-'}`];
}

function describeHealth(s: ClusterStatus): string[] {
  const h = s.health;
  const where = `as node ${s.nodeId.slice(0, 16)} sees it, layout version ${s.layoutVersion}`;
  if (!h) return [`layout version ${s.layoutVersion}`];
  if (h.state === 'healthy') return [`cluster: healthy (${where})`];
  return [
    `cluster: DEGRADED (${where})`,
    ...h.problems.flatMap((p) => [`  - ${p.problem}`, `    to do: ${p.todo}`]),
  ];
}

function describeStatus(s: ClusterStatus): string {
  return [
    ...describeHealth(s),
    ...describeSseS3(s.sseS3),
    '',
    ...formatTable(NODE_COLUMNS, s.nodes),
    '(* = this node)',
    ...describeRebalance(s),
    ...describeMetadata(s),
    ...describeBlocks(s),
  ].join('\n');
}

interface InitConfigOptions {
  join?: string;
  rpcSecretFile?: string;
  rpcAddr: string;
  publicAddr?: string;
  s3Addr: string;
  adminAddr: string;
  replicationFactor?: string;
  region?: string;
}

/** `<node id>@<address>` other nodes dial to reach the node of `config` (its rpc_public_addr, else its bind). */
function peerOf(config: CoffreConfig): string {
  const identity = loadOrCreateNodeKey(config.metadataDir);
  const id = identity.publicKey.toString('hex');
  identity.secretKey.fill(0);
  return `${id}@${config.rpcPublicAddr ?? config.rpcBindAddr}`;
}

// The configuration of a node that joins a cluster: the cluster's rpc_secret, the peer it dials at start, the
// cluster's replication factor and region, and its own admin token. Run on a node of the cluster (found as
// every command finds its node), or anywhere with --join and the secret in COFFRE_RPC_SECRET or a file.
function initJoiningConfig(file: string, o: InitConfigOptions, configFlag: string | undefined): string {
  const sourcePath = resolveConfigPath(configFlag);
  const source = existsSync(sourcePath) ? loadConfig(sourcePath) : undefined;
  if (!source && !o.join)
    throw new UserError(
      `no configuration at ${sourcePath}: run this on a node of the cluster (--config FILE), or give ` +
        '--join <node id>@<host>:<port> with the secret in COFFRE_RPC_SECRET or --rpc-secret-file FILE',
    );
  const peer = o.join ?? peerOf(source!);
  const { host: peerHost } = parsePeerAddress(peer);
  if (peerHost === '0.0.0.0' || peerHost === '::')
    throw new UserError(
      `${sourcePath} binds RPC to ${source?.rpcBindAddr} and sets no rpc_public_addr, so other nodes cannot ` +
        'know how to reach it: set rpc_public_addr there, or give --join <node id>@<host>:<port>',
    );
  const secret = parseRpcSecret(
    o.rpcSecretFile
      ? { file: resolve(o.rpcSecretFile) }
      : {
          value: source?.rpcSecret,
          file: source?.rpcSecretFile,
          allowInsecurePermissions: source?.allowWorldReadableSecrets,
        },
  );
  for (const [flag, addr] of [
    ['--rpc-addr', o.rpcAddr],
    ['--s3-addr', o.s3Addr],
    ['--admin-addr', o.adminAddr],
  ] as const)
    parseBindAddress(addr, flag);
  if (o.publicAddr) parseHostPort(o.publicAddr);
  const rf = o.replicationFactor ?? String(source?.replicationFactor ?? 1);
  if (!/^[1-7]$/.test(rf)) throw new UserError(`--replication-factor must be 1 to 7, not ${rf}`);
  const out = resolve(file);
  writeNewConfig(
    out,
    nodeConfigText({
      header: [
        `coffre node configuration for a node that joins the cluster of ${peer.split('@')[0]!.slice(0, 16)}…`,
        '(written by `coffre node init-config`; it holds the cluster rpc_secret: keep it mode 0600).',
      ],
      rpcSecretHex: secret.toString('hex'),
      replicationFactor: Number(rf),
      rpcBindAddr: o.rpcAddr,
      rpcPublicAddr: o.publicAddr,
      bootstrapPeers: [peer],
      s3BindAddr: o.s3Addr,
      s3Region: o.region ?? source?.s3Api.s3Region ?? 'us-east-1',
      rootDomain: source?.s3Api.rootDomain,
      adminBindAddr: o.adminAddr,
    }),
  );
  secret.fill(0);
  return [
    `wrote ${out} for a node that joins ${peer}`,
    'next, on the new node: `coffre server -c ' + out + '`, then `coffre -c ' + out + ' node id`;',
    'then on any node of the cluster: `coffre layout assign <its id> --zone Z --capacity SIZE` (or --gateway),',
    '`coffre layout show` and `coffre layout apply --version N`',
    ...(!o.publicAddr && /^(0\.0\.0\.0|\[::\]):/.test(o.rpcAddr)
      ? ['note: without --public-addr (rpc_public_addr) the other nodes cannot dial the new node back']
      : []),
  ].join('\n');
}

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description("this node's identity and its peers");
  node
    .command('init-config <file>')
    .description(
      'write a ready configuration for a new node that joins this cluster (its rpc_secret, this node as bootstrap peer)',
    )
    .option('--join <peer>', 'the node to dial at start, as <node id>@<host>:<port> (default: this node)')
    .option('--rpc-secret-file <file>', "a file holding the cluster's rpc_secret (default: this node's)")
    .option('--rpc-addr <host:port>', 'rpc_bind_addr of the new node', '0.0.0.0:3901')
    .option('--public-addr <host:port>', 'rpc_public_addr: how the other nodes reach the new node')
    .option('--s3-addr <host:port>', '[s3_api] api_bind_addr of the new node', '127.0.0.1:3900')
    .option('--admin-addr <host:port>', '[admin] api_bind_addr of the new node', '127.0.0.1:3903')
    .option('--replication-factor <n>', "the cluster's replication_factor (default: this node's)")
    .option('--region <region>', "[s3_api] s3_region (default: this node's, or us-east-1)")
    .action((file: string, opts: InitConfigOptions, cmd: Command) => {
      const globals = cmd.optsWithGlobals() as { config?: string };
      process.stdout.write(initJoiningConfig(file, opts, globals.config) + '\n');
    });
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
    .description(
      'whether the cluster is healthy (and what to do if not), SSE-S3, and the nodes: roles, zones, capacity, disk, up or down',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      print(await adminCall(adminTarget(cmd), 'GET', '/v1/status'), Boolean(opts.json), describeStatus);
    });
}
