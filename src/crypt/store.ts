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
  /** Reads a small object whole, with the version a later putIfUnchanged compares; null when absent. */
  getVersioned(name: string, limit: number): Promise<VersionedObject | null>;
  /**
   * Replaces a small object only if it is still at version `expected` (null: still absent); returns the new
   * version, or null when another writer got there first. `compareAndSwap` says whether the store makes that
   * check atomic with the write, or only re-reads just before writing.
   */
  putIfUnchanged(name: string, data: Buffer, expected: string | null): Promise<string | null>;
  compareAndSwap(): Promise<boolean>;
}

/** A small object's bytes and the store's version of them: an S3 ETag, or a directory file's SHA-256. */
export interface VersionedObject {
  data: Buffer;
  version: string;
}

export class ObjectTooLargeError extends Error {
  constructor(objectName: string, where: string, limit: number) {
    super(`object ${objectName} in ${where} is larger than ${limit} bytes`);
    this.name = 'ObjectTooLargeError';
  }
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
