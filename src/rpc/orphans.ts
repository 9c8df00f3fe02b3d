// rpc/orphans: in a cluster, blocks that no record will ever refer to — those of an upload through another
// node (a gateway) that failed or was abandoned after some of its blocks were stored here — are found and
// removed by each storage node itself. The metadata node's collector cannot: it never learns of them, and the
// uploading node's protection of its blocks in progress is its own.
//
// Now and then (hourly by default) the node walks its block files; those not written for a long grace period
// (a day by default: longer than any upload keeps unreferenced blocks) are checked with the metadata node in
// batches, and the ones it reports as referenced by nothing and protected by nothing are removed — unless
// written since (BlockStore.remove with unwrittenForMs), which a new upload of the same bytes does. A node
// standing alone needs none of this: its own collector walks its files (model/model.ts).
import { stat } from 'node:fs/promises';
import type { BlockHash } from '../block/block-store.js';
import type { LocalStore } from '../model/store.js';
import type { Cluster, ClusterLog } from './cluster.js';
import { isGateway } from './layout.js';

const BATCH = 500;

export interface OrphanSweepOptions {
  /** Blocks not written for this long are candidates. */
  graceMs: number;
  /** Time between sweeps (the first one comes after this too). */
  intervalMs: number;
}

export class OrphanSweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private stopped = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly local: LocalStore,
    private readonly log: ClusterLog,
    private readonly opts: OrphanSweepOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One sweep (or the one under way); resolves with the number of blocks removed. */
  sweep(): Promise<number> {
    this.running ??= this.pass()
      .catch((err: Error) => {
        this.log.warn({ err: err.message }, 'orphan block sweep failed');
        return 0;
      })
      .finally(() => (this.running = null));
    return this.running;
  }

  private async pass(): Promise<number> {
    const layout = this.cluster.currentLayout();
    const self = this.cluster.rpc.nodeId;
    if (Object.keys(layout.roles).length === 0 || isGateway(layout, self)) return 0;
    const cutoff = Date.now() - this.opts.graceMs;
    let removed = 0;
    let batch: BlockHash[] = [];
    const settle = async () => {
      const unreferenced = await this.unreferenced(batch);
      batch = [];
      for (const hash of unreferenced) {
        await this.cluster.localBlocks.remove(hash, { unwrittenForMs: this.opts.graceMs });
        if (!(await this.cluster.localBlocks.has(hash))) removed++;
      }
    };
    for await (const { hash, path } of this.cluster.localBlocks.listAll()) {
      if (this.stopped) break;
      const st = await stat(path).catch(() => undefined);
      if (!st || st.mtimeMs > cutoff) continue;
      batch.push(hash);
      if (batch.length >= BATCH) await settle();
    }
    if (batch.length > 0) await settle();
    if (removed > 0) this.log.info({ removed }, 'removed blocks that no upload will refer to');
    return removed;
  }

  private async unreferenced(hashes: BlockHash[]): Promise<BlockHash[]> {
    return (await this.cluster.callMetadata(this.local, 'unreferencedBlocks', [hashes])) as BlockHash[];
  }
}
