// api/admin/metrics: Prometheus metrics of a node (request counts, latencies and bytes by S3 operation, the
// data disk's use, process stats).
import { statfsSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  observe(operation: string, status: number, seconds: number, bytes?: { in?: number; out: number }): void {
    this.requests.inc({ operation, status: String(status) });
    this.duration.observe({ operation }, seconds);
    if (bytes?.in) this.bytes.inc({ direction: 'in' }, bytes.in);
    if (bytes?.out) this.bytes.inc({ direction: 'out' }, bytes.out);
  }
}
