// util/log-limit: a warning that anyone on the network can cause (a failed RPC handshake, a port scan) must not
// let them fill the operator's disk or drown every other line. The first few of a window are logged as they
// come; the rest are counted and summed up in one line when the window closes.

export class WarningLimiter {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly warn: (message: string) => void,
    // What the summary line says was suppressed, e.g. "refused RPC connections".
    private readonly what: string,
    private readonly windowMs = 60_000,
    private readonly burst = 5,
  ) {}

  report(message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) this.flush(now);
    if (this.logged < this.burst) {
      this.logged++;
      this.warn(message);
      return;
    }
    this.suppressed++;
    // The summary is written when the window closes even if nothing else comes; the timer never keeps the
    // process alive.
    this.flushTimer ??= setTimeout(() => this.flush(Date.now()), this.windowStart + this.windowMs - now);
    this.flushTimer.unref();
  }

  /** Writes the pending summary now (at shutdown). */
  close(): void {
    this.flush(Date.now());
  }

  private flush(now: number): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.suppressed > 0) {
      const seconds = Math.max(1, Math.round((now - this.windowStart) / 1000));
      this.warn(`${this.suppressed} more ${this.what} in the last ${seconds} s (not logged one by one)`);
    }
    this.windowStart = now;
    this.logged = 0;
    this.suppressed = 0;
  }
}
