// api/admin/metrics: Prometheus metrics of a node (request counts, latencies and bytes by S3 operation, the
// data disk's use, process stats, and the state of its blocks: copies waiting for a resync, what scrub found).
import { statfsSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ResyncStatus } from '../../rpc/resync.js';
import type { ScrubStatus } from '../../rpc/scrub.js';

/** Where the block metrics are read from when scraped (rpc/resync, rpc/scrub). */
export interface BlockMetricSources {
  resync: { status(): ResyncStatus };
  scrub: { status(): ScrubStatus };
}

export class S3Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'operation' | 'status'>;
  private readonly duration: Histogram<'operation'>;
  private readonly bytes: Counter<'direction'>;

  constructor(dataDir?: string) {
    collectDefaultMetrics({ register: this.registry, prefix: 'coffre_' });
    this.requests = new Counter({
      name: 'coffre_s3_requests_total',
      help: 'S3 API requests by operation and HTTP status',
      labelNames: ['operation', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'coffre_s3_request_duration_seconds',
      help: 'S3 API request duration by operation',
      labelNames: ['operation'],
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
      registers: [this.registry],
    });
    this.bytes = new Counter({
      name: 'coffre_s3_bytes_total',
      help: 'Bytes of S3 requests: in (declared request bodies) and out (responses as written)',
      labelNames: ['direction'],
      registers: [this.registry],
    });
    if (dataDir) {
      // Read when scraped: the file system holding the data blocks, as df reports it.
      new Gauge({
        name: 'coffre_data_disk_bytes',
        help: 'Size and free space of the file system holding data_dir',
        labelNames: ['kind'],
        registers: [this.registry],
        collect() {
          try {
            const fs = statfsSync(dataDir);
            this.set({ kind: 'total' }, fs.blocks * fs.bsize);
            this.set({ kind: 'free' }, fs.bavail * fs.bsize);
          } catch {
            this.reset(); // a data dir that cannot be read shows no figure rather than a stale one
          }
        },
      });
    }
  }

  /** Gauges read from `sources` at each scrape. */
  watchBlocks(sources: BlockMetricSources): void {
    const registers = [this.registry];
    new Gauge({
      name: 'coffre_block_resync_pending',
      help: "Block copies this node's writes could not place, waiting to be written to their node",
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of sources.resync.status().nodes) this.set({ node: n.node.slice(0, 16) }, n.pending);
      },
    });
    new Gauge({
      name: 'coffre_block_resync_copied',
      help: 'Block copies written to nodes that had missed them, since this node started',
      registers,
      collect() {
        this.set(sources.resync.status().copied);
      },
    });
    new Gauge({
      name: 'coffre_scrub_running',
      help: 'Whether a scrub pass is under way on this node (1) or not (0)',
      registers,
      collect() {
        this.set(sources.scrub.status().running ? 1 : 0);
      },
    });
    // What the last finished pass found (the one under way, if any, is in coffre status).
    const last = (field: 'checked' | 'corrupt' | 'repaired' | 'unrepairable' | 'copiesGiven') =>
      sources.scrub.status().lastPass?.[field] ?? 0;
    const lastPass: [string, string, () => number][] = [
      [
        'coffre_scrub_last_pass_blocks_checked',
        'Block files the last scrub pass checked',
        () => last('checked'),
      ],
      [
        'coffre_scrub_last_pass_blocks_corrupt',
        'Damaged copies the last scrub pass found',
        () => last('corrupt'),
      ],
      [
        'coffre_scrub_last_pass_blocks_repaired',
        'Damaged copies the last scrub pass replaced',
        () => last('repaired'),
      ],
      [
        'coffre_scrub_last_pass_blocks_unrepairable',
        'Damaged copies the last scrub pass found no good copy of on any node',
        () => last('unrepairable'),
      ],
      [
        'coffre_scrub_last_pass_copies_given',
        'Copies the last scrub pass gave to nodes that lacked one',
        () => last('copiesGiven'),
      ],
      [
        'coffre_scrub_last_pass_end_seconds',
        'When the last scrub pass ended (Unix time; 0: never)',
        () => (sources.scrub.status().lastPass?.finishedAt ?? 0) / 1000,
      ],
    ];
    for (const [name, help, value] of lastPass)
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
  }

  observe(operation: string, status: number, seconds: number, bytes?: { in?: number; out: number }): void {
    this.requests.inc({ operation, status: String(status) });
    this.duration.observe({ operation }, seconds);
    if (bytes?.in) this.bytes.inc({ direction: 'in' }, bytes.in);
    if (bytes?.out) this.bytes.inc({ direction: 'out' }, bytes.out);
  }
}
