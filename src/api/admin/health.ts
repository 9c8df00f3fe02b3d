// api/admin/health: whether the cluster, as this node sees it, is healthy or degraded, and for each problem
// what it means and what to do. `GET /v1/status` carries it (health), and `coffre status` prints it first.
// Another background task that can fall behind adds its own check here.
import type { RebalanceStatus } from '../../rpc/rebalance.js';
import type { ReplicationStatus } from '../../rpc/metadata-replication.js';
import type { SseS3Status } from '../../sse/sse-s3-keys.js';
import { blockWriteQuorum, type DiskUse } from '../../rpc/cluster.js';
import type { ScrubStatus } from '../../rpc/scrub.js';

/** Below this share of free space a storage node is reported (writes fail once the disk is full). */
export const LOW_DISK_FREE = 0.1;

export interface StatusNode {
  id: string;
  addr: string | null;
  up: boolean;
  lastSeen: string | null;
  self: boolean;
  role: string;
  zone: string | null;
  capacity: number | null;
  /** The file system holding the node's blocks; null when the node did not answer. */
  disk: DiskUse | null;
}

export interface HealthProblem {
  /** What is wrong, in a sentence. */
  problem: string;
  /** What the operator can do about it. */
  todo: string;
}

export interface Health {
  state: 'healthy' | 'degraded';
  problems: HealthProblem[];
  /** Block copies waiting to be written to each node (the resync queues this node reaches): under-replicated data. */
  underReplicated: { node: string; pending: number }[];
}

/** What one node's writes owe each node: its block resync queue (rpc/resync). */
export interface OwedCopies {
  from: string;
  nodes: { node: string; pending: number }[];
}

export interface HealthInputs {
  layoutVersion: number;
  nodes: StatusNode[];
  rebalance: RebalanceStatus | null;
  metadata: ReplicationStatus | null;
  sseS3: SseS3Status | null;
  replicationFactor: number;
  /** The resync queues of this node and of the peers it reaches. */
  owed: OwedCopies[];
  /** This node's scrub (null on a gateway, which holds no blocks). */
  scrub: ScrubStatus | null;
}

const short = (id: string) => id.slice(0, 16);

export function clusterHealth(s: HealthInputs): Health {
  const problems: HealthProblem[] = [];
  for (const n of s.nodes) {
    if (n.role === 'none') continue;
    if (!n.up)
      problems.push({
        problem: `${n.role} node ${short(n.id)} (zone ${n.zone ?? '-'}) is down${n.lastSeen ? ` since ${n.lastSeen}` : ''}`,
        todo:
          `start it again; if it is gone for good: \`coffre layout remove ${short(n.id)}\`, then ` +
          '`coffre layout apply --version N`',
      });
    else if (n.role === 'storage' && n.disk && n.disk.free < n.disk.total * LOW_DISK_FREE)
      problems.push({
        problem: `storage node ${short(n.id)} has ${Math.floor((n.disk.free / n.disk.total) * 100)}% of its disk free`,
        todo: 'free space on that disk, or add storage nodes to the layout (`coffre layout assign`)',
      });
  }
  const storageDown = s.nodes.filter((n) => n.role === 'storage' && !n.up).length;
  if (storageDown > 0) {
    const rf = s.replicationFactor;
    const quorum = blockWriteQuorum(rf);
    problems.push(
      storageDown > rf - quorum
        ? {
            problem:
              `writes of blocks placed on ${rf - quorum + 1} or more down nodes fail with 503 until enough of ` +
              `them return (each block needs ${quorum} of its ${rf} nodes)`,
            todo: 'bring the down nodes back',
          }
        : {
            problem: `writes go on (each block needs ${quorum} of its ${rf} nodes); the copies the down nodes miss are queued for them`,
            todo: 'bring the down nodes back: the copies they missed are written to them as soon as they reconnect',
          },
    );
  }
  const perNode = new Map<string, number>();
  for (const { nodes } of s.owed)
    for (const { node, pending } of nodes) perNode.set(node, (perNode.get(node) ?? 0) + pending);
  const underReplicated = [...perNode].filter(([, n]) => n > 0).map(([node, pending]) => ({ node, pending }));
  for (const { node, pending } of underReplicated)
    problems.push({
      problem: `${pending} block copies wait to be written to ${short(node)} (under-replicated data)`,
      todo:
        'bring that node back (coffre status shows the queues shrink); gone for good: `coffre layout remove ' +
        `${short(node)}\`, \`coffre layout apply\`, then \`coffre node forget ${short(node)}\``,
    });
  const unrepairable = s.scrub?.lastPass?.unrepairable ?? 0;
  if (unrepairable > 0)
    problems.push({
      problem: `the last scrub found ${unrepairable} damaged blocks with no good copy on any node`,
      todo: 'restore the objects whose blocks are lost from a backup (the node log names the blocks)',
    });
  const m = s.metadata;
  if (m?.role === 'primary')
    for (const c of m.copies.filter((copy) => !copy.up))
      problems.push({
        problem: `the metadata copy on ${short(c.id)} is unreachable${c.error ? ` (${c.error})` : ''}`,
        todo: 'bring that node back; writes need a majority of the metadata nodes',
      });
  const left = s.rebalance?.lastPass?.left ?? 0;
  if (s.rebalance && !s.rebalance.running && left > 0)
    problems.push({
      problem: `${left} block(s) of this node wait to be moved to their nodes for layout version ${s.layoutVersion}`,
      todo: 'bring the unreachable node back (moves are retried every minute and when it returns)',
    });
  const k = s.sseS3;
  if (k?.damaged)
    problems.push({
      problem: `the SSE-S3 keyring ${k.keyringFile} cannot be read: ${k.damaged}`,
      todo: 'restore the keyring file from a backup (SSE-S3 requests get 503 meanwhile)',
    });
  else if (k?.configured && !k.unlocked)
    problems.push({
      problem: 'the SSE-S3 keyring is locked: SSE-S3 requests get 503',
      todo: 'run `coffre sse-s3 unlock --gpg` (or --private-key FILE), or set [sse_s3] unlock_key_file',
    });
  return { state: problems.length === 0 ? 'healthy' : 'degraded', problems, underReplicated };
}
