// api/admin/metrics: Prometheus metrics of a node (request counts and latencies by S3 operation, process stats).
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class S3Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'operation' | 'status'>;
  private readonly duration: Histogram<'operation'>;

  constructor() {
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
  }

  observe(operation: string, status: number, seconds: number): void {
    this.requests.inc({ operation, status: String(status) });
    this.duration.observe({ operation }, seconds);
  }
}
