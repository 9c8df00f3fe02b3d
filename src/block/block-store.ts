// block: the content-addressed block store. A block is named by the SHA-256 of its stored bytes; it is written
// to a temporary file, fsync'd, renamed into place and its directory fsync'd before any metadata may refer to
// it, so a crash never leaves metadata pointing at a missing or partial block. Every read verifies the hash.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FileSlice } from '../util/file-slice.js';
import { S3Error } from '../util/s3-error.js';
import { blockHash, type BlockHash } from './hash.js';
import { BLOCK_CORRUPT, BLOCK_MISSING, readVerified } from './pool.js';

export type { BlockHash } from './hash.js';

const TMP_DIR = 'tmp';
const BLOCK_NAME = /^[0-9a-f]{64}$/;

/** A stored block that is gone: a server fault (500). Also what a worker reading block files reports. */
export class BlockMissingError extends S3Error {
  constructor(message: string) {
    super('InternalError', 500, message);
  }
}

export class BlockIntegrityError extends S3Error {
  constructor(hash: BlockHash) {
    super('InternalError', 500, `stored block ${hash.slice(0, 16)}… failed its integrity check`);
  }
}

export interface BlockReadOptions {
  /**
   * False skips the SHA-256 check of the block against its name. Only for a reader that authenticates every
   * byte itself (the chunks of an encrypted object each carry an AES-GCM tag, which catches any change the
   * hash would, and more): the check would be a second pass over the data for nothing.
   */
  verify?: boolean;
}

// What the model needs of a place that keeps blocks: this node's BlockStore, or blocks spread over a cluster.
export interface BlockIo {
  write(data: Uint8Array, knownHash?: BlockHash): Promise<BlockHash>;
  read(hash: BlockHash, opts?: BlockReadOptions): Promise<Buffer>;
  /**
   * Deletes the block. With `unwrittenForMs`, a copy written (or rewritten) more recently than that is kept: the
   * collector, which decided the block is unreferenced, passes how long it has been so, so that a writer that
   * found the block already stored meanwhile (and will refer to it) does not lose it.
   */
  remove(hash: BlockHash, opts?: { unwrittenForMs?: number }): Promise<void>;
  /** Whether the block is stored (on every node that should hold it). */
  has(hash: BlockHash): Promise<boolean>;
  /**
   * Where bytes [start, end) of a block are on this node's disk, for a reader that reads them itself and
   * authenticates them itself (see BlockReadOptions.verify). Undefined (or absent) where the block is not
   * simply a local file: then it is read.
   */
  slice?(hash: BlockHash, start: number, end: number): FileSlice | undefined;
}

export class BlockStore implements BlockIo {
  private readonly knownDirs = new Set<string>();
  // Temporary files of writes in progress: never taken for leftovers of a crash, however slow the write.
  private readonly writing = new Set<string>();

  constructor(readonly root: string) {
    mkdirSync(join(root, TMP_DIR), { recursive: true, mode: 0o700 });
  }

  static hashOf(data: Uint8Array): BlockHash {
    return blockHash(data);
  }

  // A block's file is named by its hash and nothing else: a name that is not 64 lowercase hex digits never
  // becomes a path (defence in depth behind the RPC decoders).
  pathOf(hash: BlockHash): string {
    if (!BLOCK_NAME.test(hash)) throw new Error('not a block hash');
    return join(this.root, hash.slice(0, 2), hash.slice(2, 4), hash);
  }

  slice(hash: BlockHash, start: number, end: number): FileSlice {
    return { path: this.pathOf(hash), start, end, missing: missingMessage(hash) };
  }

  // Durably stores `data` and returns its hash. Writing a block that already exists only marks it as written
  // now (its mtime), which a removal with `unwrittenForMs` respects; if it vanishes meanwhile, it is written.
  async write(data: Uint8Array, knownHash?: BlockHash): Promise<BlockHash> {
    const hash = knownHash ?? BlockStore.hashOf(data);
    const finalPath = this.pathOf(hash);
    if (await exists(finalPath)) {
      const now = new Date();
      const touched = await utimes(finalPath, now, now).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return false;
          throw err;
        },
      );
      if (touched) return hash;
    }
    await this.writeFile(data, hash);
    return hash;
  }

  /**
   * Puts `data` in place of the block's file, whatever is there now (a copy scrub found damaged): written
   * aside, fsync'd and renamed over it, so a reader sees the old file or the new one, never a mix.
   */
  async replace(data: Uint8Array, hash: BlockHash): Promise<void> {
    if (BlockStore.hashOf(data) !== hash) throw new Error('a replacement block does not match its name');
    await this.writeFile(data, hash);
  }

  private async writeFile(data: Uint8Array, hash: BlockHash): Promise<void> {
    const dir = dirname(this.pathOf(hash));
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      this.knownDirs.add(dir);
    }
    const tmpName = `${hash}.${randomBytes(6).toString('hex')}`;
    const tmpPath = join(this.root, TMP_DIR, tmpName);
    this.writing.add(tmpName);
    try {
      const fh = await open(tmpPath, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmpPath, this.pathOf(hash));
    } finally {
      this.writing.delete(tmpName);
    }
    await syncDir(dir);
  }

  // Reads a whole block and checks it against its name, both on a block worker (block/pool), unless the
  // caller authenticates the bytes itself. The buffer returned is the caller's alone: nothing else holds it,
  // so it may be handed on to another thread.
  async read(hash: BlockHash, opts: BlockReadOptions = {}): Promise<Buffer> {
    try {
      if (opts.verify === false) return await readFile(this.pathOf(hash));
      return await readVerified(this.pathOf(hash), hash);
    } catch (err) {
      const name = (err as Error).name;
      if (name === BLOCK_MISSING || (err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BlockMissingError(missingMessage(hash));
      }
      if (name === BLOCK_CORRUPT) throw new BlockIntegrityError(hash);
      throw err;
    }
  }

  async remove(hash: BlockHash, opts: { unwrittenForMs?: number } = {}): Promise<void> {
    if (opts.unwrittenForMs === undefined) return rm(this.pathOf(hash), { force: true });
    // Checked and unlinked in one synchronous step: a write's touch lands either before the check (the copy
    // is kept) or after the unlink (the write then stores the block afresh).
    const path = this.pathOf(hash);
    const mtime = statSync(path, { throwIfNoEntry: false })?.mtimeMs;
    if (mtime !== undefined && mtime <= Date.now() - opts.unwrittenForMs) rmSync(path, { force: true });
  }

  // For the garbage collector: no await between its last check that nobody uses the block and the unlink.
  removeSync(hash: BlockHash): void {
    rmSync(this.pathOf(hash), { force: true });
  }

  async has(hash: BlockHash): Promise<boolean> {
    return exists(this.pathOf(hash));
  }

  // Every stored block (for garbage collection of blocks no metadata refers to). The directories are read
  // asynchronously: a walk over a large store must not stall the requests being served meanwhile.
  async *listAll(): AsyncGenerator<{ hash: BlockHash; path: string }> {
    for (const a of await readdirOrEmpty(this.root)) {
      if (a === TMP_DIR || a.length !== 2) continue;
      for (const b of await readdirOrEmpty(join(this.root, a))) {
        for (const hash of await readdirOrEmpty(join(this.root, a, b))) {
          if (/^[0-9a-f]{64}$/.test(hash)) yield { hash, path: join(this.root, a, b, hash) };
        }
      }
    }
  }

  // Temporary files left by a crash mid-write are never referenced: remove them.
  async cleanTemporary(olderThanMs: number): Promise<void> {
    const dir = join(this.root, TMP_DIR);
    for (const name of await readdirOrEmpty(dir)) {
      if (this.writing.has(name)) continue;
      const p = join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > olderThanMs) await unlink(p).catch(() => undefined);
    }
  }
}

const missingMessage = (hash: BlockHash) => `stored block ${hash.slice(0, 16)}… is missing`;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
