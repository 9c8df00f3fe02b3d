// rpc/scrub: finds bit rot and lost copies before a reader needs them. Now and then (scrub_interval_hours)
// a storage node re-reads every block file it holds against its hash, at most scrub_rate_mib MiB a second so
// that the pass never crowds out the requests served meanwhile. A copy that fails its check is replaced by a
// good one from another node; and for each block it holds, the node makes sure the block's other nodes hold
// it too, giving a copy to any that lacks one (a file deleted on a disk, a copy a resync never wrote). What
// each pass found is kept in this node's database and shown by `coffre status` and /metrics.
import { setTimeout as delay } from 'node:timers/promises';
import { BlockIntegrityError, BlockMissingError, type BlockHash } from '../block/block-store.js';
import type { LocalTable } from '../db/db.js';
import type { Cluster, ClusterLog } from './cluster.js';
import { isGateway } from './layout.js';

export interface ScrubOptions {
  /** Time from the end of one pass to the start of the next; 0: passes run only when asked for. */
  intervalMs: number;
  /** The most a pass reads, in bytes per second. */
  bytesPerSecond: number;
}

export interface ScrubPass {
  startedAt: number;
  finishedAt: number | null;
  /** Block files read and checked. */
  checked: number;
  bytes: number;
  /** Copies on this node that failed their check (or vanished mid-pass), and how many of them were replaced. */
  corrupt: number;
  repaired: number;
  /** Damaged copies no other node had a good copy of: data lost unless an operator finds it. */
  unrepairable: number;
  /** Copies given to other nodes of a block that lacked one. */
  copiesGiven: number;
}

export interface ScrubStatus {
  running: boolean;
  current: ScrubPass | null;
  lastPass: ScrubPass | null;
  /** When the next pass starts by itself (null: only when asked for). */
  nextAt: number | null;
  bytesPerSecond: number;
}

type ScrubState = { lastPass?: ScrubPass; nextAt?: number };

export class Scrubber {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private current: ScrubPass | null = null;
  private stopped = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly state: LocalTable<ScrubState>,
    private readonly log: ClusterLog,
    private readonly opts: ScrubOptions,
  ) {}

  private saved(): ScrubState {
    return this.state.get(['scrub']) ?? {};
  }

  /** Schedules passes: the first one an interval after this node first started, then one per interval. */
  async start(): Promise<void> {
    if (this.opts.intervalMs <= 0) return;
    const saved = this.saved();
    if (saved.nextAt === undefined)
      await this.state.put(['scrub'], { ...saved, nextAt: Date.now() + this.opts.intervalMs });
    this.arm();
  }

  private arm(): void {
    if (this.stopped || this.opts.intervalMs <= 0) return;
    const nextAt = this.saved().nextAt ?? Date.now() + this.opts.intervalMs;
    // setTimeout takes at most about 24.8 days: longer waits are taken in steps.
    const wait = Math.min(Math.max(0, nextAt - Date.now()), 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (Date.now() >= nextAt) void this.runNow();
      else this.arm();
    }, wait);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Starts a pass now (or returns the one under way); resolves when it ends. */
  runNow(): Promise<void> {
    this.running ??= this.pass()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'scrub pass failed'))
      .finally(() => {
        this.running = null;
        this.current = null;
        this.arm();
      });
    return this.running;
  }

  status(): ScrubStatus {
    const saved = this.saved();
    return {
      running: this.running !== null,
      current: this.current,
      lastPass: saved.lastPass ?? null,
      nextAt: this.opts.intervalMs > 0 ? (saved.nextAt ?? null) : null,
      bytesPerSecond: this.opts.bytesPerSecond,
    };
  }

  private async pass(): Promise<void> {
    const layout = this.cluster.currentLayout();
    if (isGateway(layout, this.cluster.rpc.nodeId)) return;
    const pass: ScrubPass = {
      startedAt: Date.now(),
      finishedAt: null,
      checked: 0,
      bytes: 0,
      corrupt: 0,
      repaired: 0,
      unrepairable: 0,
      copiesGiven: 0,
    };
    this.current = pass;
    this.log.info({}, 'scrub: pass started');
    for await (const { hash } of this.cluster.localBlocks.listAll()) {
      if (this.stopped) return; // an unfinished pass is not recorded: the next start's schedule stands
      await this.scrubBlock(hash, pass);
      // Bounded rate: a pass ahead of bytesPerSecond waits until it is not.
      const due = pass.startedAt + (pass.bytes / this.opts.bytesPerSecond) * 1000;
      if (due > Date.now()) await delay(due - Date.now());
    }
    pass.finishedAt = Date.now();
    const nextAt = this.opts.intervalMs > 0 ? pass.finishedAt + this.opts.intervalMs : undefined;
    await this.state.put(['scrub'], { lastPass: pass, ...(nextAt !== undefined ? { nextAt } : {}) });
    const { checked, corrupt, repaired, unrepairable, copiesGiven } = pass;
    const fields = { checked, corrupt, repaired, unrepairable, copiesGiven };
    if (unrepairable > 0)
      this.log.warn(fields, 'scrub: pass done; some damaged blocks have no good copy on any node');
    else this.log.info(fields, 'scrub: pass done');
  }

  private async scrubBlock(hash: BlockHash, pass: ScrubPass): Promise<void> {
    const local = this.cluster.localBlocks;
    let data: Buffer;
    try {
      data = await local.read(hash);
      pass.checked++;
      pass.bytes += data.length;
    } catch (err) {
      if (err instanceof BlockMissingError) return; // removed since the walk listed it
      if (!(err instanceof BlockIntegrityError)) throw err;
      pass.checked++;
      pass.corrupt++;
      try {
        data = await this.cluster.blocks.readExcept(hash, this.cluster.rpc.nodeId);
      } catch {
        pass.unrepairable++;
        this.log.warn({ block: hash.slice(0, 16) }, 'scrub: damaged block and no good copy elsewhere');
        return;
      }
      await local.replace(data, hash);
      pass.repaired++;
      pass.bytes += data.length;
      this.log.info({ block: hash.slice(0, 16) }, 'scrub: damaged block replaced by a good copy');
    }
    await this.completeCopies(hash, data, pass);
  }

  /** Gives a copy to each of the block's other nodes that lacks one (and answers: the others wait). */
  private async completeCopies(hash: BlockHash, data: Buffer, pass: ScrubPass): Promise<void> {
    const self = this.cluster.rpc.nodeId;
    const blocks = this.cluster.blocks;
    const targets = blocks.targets(hash);
    // A block this node should not hold is the rebalancer's to move.
    if (!targets.includes(self)) return;
    for (const node of targets) {
      if (node === self) continue;
      try {
        if (await blocks.heldBy(node, hash)) continue;
        await blocks.storeOn(node, hash, data);
        pass.copiesGiven++;
      } catch {
        // Unreachable now: a write it missed is in its writer's resync queue; the next pass looks again.
      }
    }
  }
}
