// rpc/rebalance: after the layout changes, each node moves the blocks it holds to the nodes the new layout
// picks for them. For every local block it makes sure each of the block's nodes holds a copy (asking first,
// sending it when missing; the receiver checks it against its name), and once they all do and this node is no
// longer one of them, removes its own copy. Until then reads find the block here (ClusterBlocks.read looks
// beyond a block's own nodes), so objects stay readable throughout. A node whose role was removed drains this
// way: it can be stopped once a pass reports nothing left.
//
// A pass walks the local block files; blocks it could not settle (a node down, a copy refused) are retried by
// another pass a minute later, or when a peer comes up. A new layout during a pass starts another pass after it.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BlockHash } from '../block/block-store.js';
import type { Cluster, ClusterLog } from './cluster.js';
import { blockNodes, type ClusterLayout } from './layout.js';

/** Blocks handled at once by a pass: enough to hide the round trips, few enough to bound memory (1 MiB each). */
const PARALLEL_BLOCKS = 4;
const DEFAULT_RETRY_MS = 60_000;

export interface RebalanceReport {
  /** The layout version the pass placed blocks for. */
  layoutVersion: number;
  /** Local blocks looked at. */
  checked: number;
  /** Copies sent to nodes that lacked them. */
  copied: number;
  /** Local copies removed because their new nodes all hold the block. */
  removed: number;
  /** Blocks left for the next pass (a node unreachable or a copy refused). */
  left: number;
}

/** What `coffre status` shows of this node's rebalancing. */
export interface RebalanceStatus {
  running: boolean;
  /** The layout version every local block is in place for (null: not known to be in place for any). */
  settledVersion: number | null;
  /** The last pass, if any since start. */
  lastPass: RebalanceReport | null;
  /** The pass under way, as far as it has gone (null when none runs). */
  currentPass: RebalanceReport | null;
}

export class Rebalancer {
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private last: RebalanceReport | null = null;
  private current: RebalanceReport | null = null;

  /** Remembers, across restarts, the layout version a pass last settled every block for. */
  private readonly stateFile: string;
  private settledVersion: number | null;

  constructor(
    private readonly cluster: Cluster,
    metadataDir: string,
    private readonly log: ClusterLog,
    private readonly retryMs = DEFAULT_RETRY_MS,
  ) {
    this.stateFile = join(metadataDir, 'rebalance.json');
    this.settledVersion = existsSync(this.stateFile)
      ? ((JSON.parse(readFileSync(this.stateFile, 'utf8')) as { settledVersion?: number }).settledVersion ??
        null)
      : null;
  }

  status(): RebalanceStatus {
    return {
      running: this.running !== null,
      settledVersion: this.settledVersion,
      lastPass: this.last,
      currentPass: this.current ? { ...this.current } : null,
    };
  }

  /** True when blocks may not be where the current layout puts them (a pass is due). */
  get unsettled(): boolean {
    const layout = this.cluster.currentLayout();
    return Object.keys(layout.roles).length > 0 && this.settledVersion !== layout.version;
  }

  /** Runs a pass now, or one more right after the pass under way. Resolves when no pass is running. */
  schedule(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Stops after the blocks under way; no further passes. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        this.last = await this.pass(this.cluster.currentLayout());
      } catch (err) {
        this.current = null;
        this.log.warn({ err: (err as Error).message }, 'rebalance pass failed');
        this.last = null;
        this.again = false;
        this.retryLater();
        return;
      }
      const { checked, copied, removed, left, layoutVersion } = this.last;
      if (copied + removed + left > 0) {
        this.log.info({ layoutVersion, checked, copied, removed, left }, 'rebalance pass done');
      }
      const complete = left === 0 && !this.stopped && layoutVersion === this.cluster.currentLayout().version;
      if (complete && this.settledVersion !== layoutVersion) this.saveSettled(layoutVersion);
      if (left > 0 && !this.again) this.retryLater();
    } while (this.again && !this.stopped);
  }

  private saveSettled(version: number): void {
    this.settledVersion = version;
    const tmp = `${this.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify({ settledVersion: version }), { mode: 0o600 });
    renameSync(tmp, this.stateFile);
  }

  private retryLater(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => void this.schedule(), this.retryMs);
    this.retryTimer.unref();
  }

  private async pass(layout: ClusterLayout): Promise<RebalanceReport> {
    const report: RebalanceReport = {
      layoutVersion: layout.version,
      checked: 0,
      copied: 0,
      removed: 0,
      left: 0,
    };
    // A node standing alone (no layout yet) keeps everything.
    if (Object.keys(layout.roles).length === 0) return report;
    this.current = report;
    const inFlight = new Set<Promise<void>>();
    for await (const { hash } of this.cluster.localBlocks.listAll()) {
      // A newer layout makes this pass's placement stale: the pass it scheduled takes over.
      if (this.stopped || this.cluster.currentLayout().version !== layout.version) break;
      report.checked++;
      const settling = this.settle(layout, hash, report).finally(() => inFlight.delete(settling));
      inFlight.add(settling);
      if (inFlight.size >= PARALLEL_BLOCKS) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    this.current = null;
    return report;
  }

  /** Gives each of the block's nodes a copy; then drops ours if we are not one of them. */
  private async settle(layout: ClusterLayout, hash: BlockHash, report: RebalanceReport): Promise<void> {
    const self = this.cluster.rpc.nodeId;
    const targets = blockNodes(layout, hash, this.cluster.replicationFactor);
    let data: Buffer | null = null;
    try {
      for (const node of targets) {
        if (node === self || (await this.cluster.blocks.heldBy(node, hash))) continue;
        data ??= await this.cluster.localBlocks.read(hash);
        await this.cluster.blocks.storeOn(node, hash, data);
        report.copied++;
      }
    } catch {
      report.left++;
      return;
    }
    if (!targets.includes(self)) {
      await this.cluster.localBlocks.remove(hash);
      report.removed++;
    }
  }
}
