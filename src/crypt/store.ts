// crypt/store: what a remote backend must do. Backends only ever see object names (HMACs when encrypted) and
// opaque bytes; encryption and chunking wrap them (see crypt-remote.ts), as in git-annex.

export interface ObjectStore {
  /** Human-readable location for messages. */
  readonly description: string;
  /** Stores an object atomically: readers see the whole object or none. */
  put(name: string, data: AsyncIterable<Buffer>, size: number): Promise<void>;
  /** Streams an object; throws MissingObjectError when absent. */
  get(name: string): AsyncIterable<Buffer>;
  has(name: string): Promise<boolean>;
  /** Removes an object; absent objects are not an error. */
  remove(name: string): Promise<void>;
  /** Releases connections, if the backend holds any. */
  close?(): void;
}

export class MissingObjectError extends Error {
  constructor(
    readonly objectName: string,
    where: string,
  ) {
    super(`object ${objectName} is missing from ${where}`);
    this.name = 'MissingObjectError';
  }
}
