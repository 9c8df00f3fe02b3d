// crypt/byte-reader: pull exact byte counts out of an async stream of buffers, so the OpenPGP packet parser can
// read headers and stream bodies without ever holding a whole object in memory.

export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly source: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.source =
      Symbol.asyncIterator in source
        ? source[Symbol.asyncIterator]()
        : (async function* () {
            yield* source;
          })();
  }

  /** Pull one more chunk from the source; false at end of stream. */
  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const next = await this.source.next();
    if (next.done) {
      this.done = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    while (this.buffered === 0) {
      if (!(await this.fill())) return true;
    }
    return false;
  }

  /** Exactly n bytes, or a TruncatedError when the stream ends first. */
  async readExact(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (!(await this.fill())) throw new TruncatedError(`stream ended ${n - this.buffered} bytes early`);
    }
    return this.take(n);
  }

  async readByte(): Promise<number> {
    return (await this.readExact(1))[0];
  }

  /** Between 1 and max bytes (whatever is at hand), or null at end of stream. */
  async readUpTo(max: number): Promise<Buffer | null> {
    if (await this.atEnd()) return null;
    return this.take(Math.min(max, this.chunks[0].length));
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length === n) {
      this.chunks.shift();
      this.buffered -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0];
      const want = n - filled;
      if (head.length <= want) {
        head.copy(out, filled);
        filled += head.length;
        this.chunks.shift();
      } else {
        head.copy(out, filled, 0, want);
        this.chunks[0] = head.subarray(want);
        filled += want;
      }
    }
    this.buffered -= n;
    return out;
  }
}

export class TruncatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TruncatedError';
  }
}
