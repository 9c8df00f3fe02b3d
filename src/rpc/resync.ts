// rpc/resync: the copies of blocks that a node's writes could not place. A block write is acknowledged once a
// write quorum of its nodes holds it (rpc/cluster ClusterBlocks.write); each copy it missed — a node down,
// stalled or refusing — is recorded here, in a table of this node's own database that survives restarts, and
// written to its node once that node is back: at once when it reconnects, and every retry interval besides.
// The copy comes from any other node whose copy passes its check. An entry whose block is gone everywhere
// (its object was deleted meanwhile) or that the node no longer holds under the current layout (the
// rebalancer, rpc/rebalance, then places the block) is dropped.
import type { BlockHash } from '../block/block-store.js';
import type { LocalTable } from '../db/db.js';
import { S3Error } from '../util/s3-error.js';
import type { Cluster, ClusterLog, MissedCopies } from './cluster.js';

/** One copy a node lacks, keyed [node id, block hash]. */
interface MissedCopy {
  since: number;
}

export interface ResyncNodeStatus {
  node: string;
  /** Copies of blocks waiting to be written to the node. */
  pending: number;
  /** Why the last attempt for it stopped, if it did. */
  lastError: string | null;
}

export interface ResyncStatus {
  /** Per node this node owes copies to. */
  nodes: ResyncNodeStatus[];
  /** Copies written since this node started. */
  copied: number;
  running: boolean;
}

// Blocks settled at once for one node: a few, so that a returning node is filled quickly without the copies
// crowding out the requests the cluster serves meanwhile.
const PARALLEL_COPIES = 4;
const BATCH = 256;

export class BlockResync implements MissedCopies {
  private readonly pending = new Map<string, number>();
  private readonly lastError = new Map<string, string>();
  private readonly draining = new Map<string, Promise<void>>();
  private copied = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly table: LocalTable<MissedCopy>,
    private readonly log: ClusterLog,
    private readonly retryMs: number,
  ) {
    for (const { key } of table.range()) {
      const node = String(key[0]);
      this.pending.set(node, (this.pending.get(node) ?? 0) + 1);
    }
  }

  start(): void {
    this.timer = setInterval(() => this.drainAll(), this.retryMs);
    this.timer.unref();
    this.drainAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(this.draining.values());
  }

  async missed(node: string, hash: BlockHash): Promise<void> {
    // Counted once committed, and only if new: the same block written twice at once is one missed copy.
    if (await this.table.putIfAbsent([node, hash], { since: Date.now() }))
      this.pending.set(node, (this.pending.get(node) ?? 0) + 1);
  }

  async placed(node: string, hash: BlockHash): Promise<void> {
    if (await this.table.removeIfPresent([node, hash]))
      this.pending.set(node, Math.max(0, (this.pending.get(node) ?? 1) - 1));
  }

  /** A peer is back: write it the copies it missed. */
  peerUp(node: string): void {
    if ((this.pending.get(node) ?? 0) > 0) void this.drain(node);
  }

  /** Copies owed to `node` (0 when none). */
  pendingFor(node: string): number {
    return this.pending.get(node) ?? 0;
  }

  status(): ResyncStatus {
    const nodes = [...this.pending]
      .filter(([, n]) => n > 0)
      .map(([node, pending]) => ({ node, pending, lastError: this.lastError.get(node) ?? null }))
      .sort((a, b) => a.node.localeCompare(b.node));
    return { nodes, copied: this.copied, running: this.draining.size > 0 };
  }

  private drainAll(): void {
    for (const [node, n] of this.pending) if (n > 0 && this.reachable(node)) void this.drain(node);
  }

  private reachable(node: string): boolean {
    return node === this.cluster.rpc.nodeId || this.cluster.rpc.connectedPeers().includes(node);
  }

  /** Writes `node` every copy it lacks (or joins the run under way); resolves when it is done or stops. */
  drain(node: string): Promise<void> {
    let run = this.draining.get(node);
    if (!run) {
      run = this.drainNode(node).finally(() => this.draining.delete(node));
      this.draining.set(node, run);
    }
    return run;
  }

  private async drainNode(node: string): Promise<void> {
    const before = this.pendingFor(node);
    let copied = 0;
    let stoppedBy: string | null = null;
    // Entries are taken from the table in batches (every settled entry leaves it); one that fails stops the
    // run (its node is likely down again), leaving it and the rest for the next one.
    while (!this.stopped && stoppedBy === null) {
      const batch = [...this.table.range([node], BATCH)].map(({ key }) => String(key[1]));
      if (batch.length === 0) break;
      const inFlight = new Set<Promise<void>>();
      for (const hash of batch) {
        if (this.stopped || stoppedBy !== null) break;
        const settling = this.settle(node, hash)
          .then((wrote) => void (wrote && copied++))
          .catch((err: Error) => void (stoppedBy ??= err.message))
          .finally(() => inFlight.delete(settling));
        inFlight.add(settling);
        if (inFlight.size >= PARALLEL_COPIES) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    }
    this.copied += copied;
    if (stoppedBy !== null) this.lastError.set(node, stoppedBy);
    else this.lastError.delete(node);
    if (copied > 0 || stoppedBy !== null)
      this.log.info(
        { node: node.slice(0, 16), copied, left: this.pendingFor(node), was: before, stoppedBy },
        stoppedBy === null ? 'resync: copies written to a node that missed them' : 'resync: stopped for now',
      );
  }

  /** Gives `node` its copy of `hash`; true if it had to be written. Throws when it cannot be done now. */
  private async settle(node: string, hash: BlockHash): Promise<boolean> {
    const blocks = this.cluster.blocks;
    // Placement changed since: the block's current nodes are the rebalancer's business.
    if (!blocks.targets(hash).includes(node) || (await blocks.heldBy(node, hash))) {
      await this.placed(node, hash);
      return false;
    }
    let data: Buffer;
    try {
      data = await blocks.readExcept(hash, node);
    } catch (err) {
      // Every other node answered and none holds a good copy: its object was deleted and collected, or the
      // block is lost (which scrub reports). Nothing is left to give. A node that did not answer might hold
      // one: then the entry waits.
      const others = blocks.targets(hash).filter((n) => n !== node);
      const allAnswered = others.every((n) => this.reachable(n));
      if (allAnswered && !(err instanceof S3Error && err.status === 503)) {
        await this.placed(node, hash);
        return false;
      }
      throw err;
    }
    await blocks.storeOn(node, hash, data);
    await this.placed(node, hash);
    return true;
  }
}
