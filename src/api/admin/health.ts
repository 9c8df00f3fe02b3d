// api/admin/health: whether the cluster, as this node sees it, is healthy or degraded, and for each problem
// what it means and what to do. `GET /v1/status` carries it (health), and `coffre status` prints it first.
// Another background task that can fall behind adds its own check here.
import type { RebalanceStatus } from '../../rpc/rebalance.js';
import type { ReplicationStatus } from '../../rpc/metadata-replication.js';
import type { SseS3Status } from '../../sse/sse-s3-keys.js';
import type { DiskUse } from '../../rpc/cluster.js';

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
}

export interface HealthInputs {
  layoutVersion: number;
  nodes: StatusNode[];
  rebalance: RebalanceStatus | null;
  metadata: ReplicationStatus | null;
  sseS3: SseS3Status | null;
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
  return { state: problems.length === 0 ? 'healthy' : 'degraded', problems };
}
