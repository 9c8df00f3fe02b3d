// crypt/crypt-remote: git-annex's composition — chunking wraps encryption wraps a plain object store. The store
// only ever sees HMAC'd names and OpenPGP blobs. Retrieved content is written to a temporary file, authenticated
// (MDC) and checked against the key's hash before it is renamed into place: never a silently wrong file.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat, truncate } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { ByteReader } from './byte-reader.js';
import { createHasher, type Hasher } from '../util/hash-worker.js';
import type { RemoteCipher } from './cipher.js';
import { logPathOf, type LocationLog } from './location-log.js';
import { backendHash, chunkCount, chunkKey, keyDigest, parseKey, sha256eKey } from './names.js';
import { IntegrityError, OversizeError, decryptMessage, encryptMessage, type Sealing } from './openpgp.js';
import type { ObjectStore } from './store.js';
import { padme } from './padding.js';

export type Progress = (bytes: number) => void;

/** How a key is laid out on the remote: whole, or in `count` chunks of `size`. */
export interface Layout {
  chunkSize?: number;
  chunkCount?: number;
}

// Content of 16 MiB or more is decrypted and hashed on worker threads, beside the reading and writing; smaller
// content is not worth a thread.
const HASH_WORKER_THRESHOLD = 16 * 1024 * 1024;
const worthAThread = (size: number | undefined) => size !== undefined && size >= HASH_WORKER_THRESHOLD;

/**
 * Bound for an object whose key names no size and is not chunked (URL and some WORM keys): the 4 GiB an
 * unchunked object may hold at most, so decoding stays bounded even then.
 */
const UNSIZED_OBJECT_LIMIT = 2 ** 32;

/** Bytes of the key's `index`th object (0-based) under `layout`, when the key names its size. */
function pieceLength(size: number | undefined, layout: Layout, index: number): number | undefined {
  if (!layout.chunkSize || !layout.chunkCount) return size;
  if (size === undefined) return layout.chunkSize;
  return Math.max(0, Math.min(layout.chunkSize, size - index * layout.chunkSize));
}

export class ContentMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContentMismatchError';
  }
}

/** Computes a file's SHA256E key (one streaming pass). */
export async function keyForFile(path: string): Promise<{ key: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { key: sha256eKey(size, h.digest('hex'), path), size };
}

export class CryptRemote {
  private sealingCache: Sealing | null | undefined;

  constructor(
    readonly cipher: RemoteCipher,
    readonly store: ObjectStore,
    readonly log: LocationLog,
    /** Chunk size for new content (git-annex's `chunk=`), if any. */
    readonly chunkSize?: number,
    /** Pad new objects to Padmé sizes (padding.ts); readers need nothing special. */
    readonly pad = false,
  ) {}

  /** Plaintext length an object of `length` bytes is padded to, if padding is on. */
  private padTo(length: number): number | undefined {
    return this.pad ? padme(length) : undefined;
  }

  private async sealing(): Promise<Sealing | null> {
    if (this.sealingCache === undefined) this.sealingCache = await this.cipher.sealing();
    return this.sealingCache;
  }

  /** The object names of a key's pieces, in order. */
  objectNames(key: string, layout: Layout): string[] {
    if (!layout.chunkSize || !layout.chunkCount) return [this.cipher.objectName(key)];
    const names: string[] = [];
    for (let n = 1; n <= layout.chunkCount; n++)
      names.push(this.cipher.objectName(chunkKey(key, layout.chunkSize, n)));
    return names;
  }

  /** Where a key's content is: the location log's record, else what the remote's chunk setting implies. */
  async layoutOf(key: string): Promise<Layout> {
    const entry = this.log.get(key);
    if (entry?.chunkSize && entry.chunkCount)
      return { chunkSize: entry.chunkSize, chunkCount: entry.chunkCount };
    if (entry) return {};
    const size = parseKey(key).size;
    if (this.chunkSize && size !== undefined) {
      const guess = { chunkSize: this.chunkSize, chunkCount: chunkCount(size, this.chunkSize) };
      if (await this.store.has(this.objectNames(key, guess)[0])) return guess;
    }
    return {};
  }

  private async putPiece(name: string, path: string, start: number, length: number, progress?: Progress) {
    const source =
      length === 0 ? [] : createReadStream(path, { start, end: start + length - 1, highWaterMark: 1 << 20 });
    const counted = (async function* () {
      for await (const c of source) {
        progress?.((c as Buffer).length);
        yield c as Buffer;
      }
    })();
    const sealing = await this.sealing();
    const body = sealing ? encryptMessage(counted, length, sealing, this.padTo(length)) : counted;
    await this.store.put(name, body, length);
  }

  /** Stores a file under `key` (computed when absent); resumes chunked uploads by skipping stored chunks. */
  async storeFile(path: string, known?: { key: string; size: number }, progress?: Progress): Promise<string> {
    const { key, size } = known ?? (await keyForFile(path));
    const paths = [logPathOf(path)];
    const actual = (await stat(path)).size;
    if (actual !== size) throw new ContentMismatchError(`${path} changed while being stored`);
    if (!this.chunkSize) {
      await this.putPiece(this.cipher.objectName(key), path, 0, size, progress);
      this.log.record({ key, present: true, paths });
      return key;
    }
    const layout = { chunkSize: this.chunkSize, chunkCount: chunkCount(size, this.chunkSize) };
    const names = this.objectNames(key, layout);
    for (let i = 0; i < names.length; i++) {
      const start = i * this.chunkSize;
      const length = Math.min(this.chunkSize, size - start);
      // A chunk already there is from an interrupted earlier store of the same content: keep it.
      if (names.length > 1 && (await this.store.has(names[i]))) {
        progress?.(length);
        continue;
      }
      await this.putPiece(names[i], path, start, length, progress);
    }
    this.log.record({
      key,
      present: true,
      chunkSize: layout.chunkSize,
      chunkCount: layout.chunkCount,
      paths,
    });
    return key;
  }

  /** Stores content arriving as a stream (rotation re-encrypts this way, without plaintext on disk). */
  async storeStream(key: string, size: number, source: AsyncIterable<Buffer>): Promise<void> {
    const reader = new ByteReader(source);
    const sealing = await this.sealing();
    const piece = async (name: string, length: number) => {
      const bytes = (async function* () {
        let left = length;
        while (left > 0) {
          const part = await reader.readExact(Math.min(left, 1 << 20));
          left -= part.length;
          yield part;
        }
      })();
      await this.store.put(
        name,
        sealing ? encryptMessage(bytes, length, sealing, this.padTo(length)) : bytes,
        length,
      );
    };
    if (!this.chunkSize) {
      await piece(this.cipher.objectName(key), size);
      if (!(await reader.atEnd()))
        throw new ContentMismatchError(`content of ${key} is longer than its key says`);
      this.log.record({ key, present: true });
      return;
    }
    const layout = { chunkSize: this.chunkSize, chunkCount: chunkCount(size, this.chunkSize) };
    const names = this.objectNames(key, layout);
    for (let i = 0; i < names.length; i++)
      await piece(names[i], Math.min(this.chunkSize, size - i * this.chunkSize));
    if (!(await reader.atEnd()))
      throw new ContentMismatchError(`content of ${key} is longer than its key says`);
    this.log.record({ key, present: true, ...layout });
  }

  /** Streams a key's decrypted content (all chunks), checking size and hash at the end. */
  async *content(
    key: string,
    layout?: Layout,
    progress?: Progress,
    resume?: { chunks: number; prefix: AsyncIterable<Buffer> },
  ): AsyncGenerator<Buffer> {
    const parsed = parseKey(key);
    const algo = backendHash(parsed.backend);
    const h = algo ? createHasher(algo, worthAThread(parsed.size)) : null;
    try {
      yield* this.verifiedContent(key, parsed, h, layout, progress, resume);
    } finally {
      await h?.abandon();
    }
  }

  private async *verifiedContent(
    key: string,
    parsed: ReturnType<typeof parseKey>,
    h: Hasher | null,
    layout?: Layout,
    progress?: Progress,
    resume?: { chunks: number; prefix: AsyncIterable<Buffer> },
  ): AsyncGenerator<Buffer> {
    let size = 0;
    // Chunks already retrieved (an interrupted get) are not fetched again, but still hashed: the whole
    // file is checked against its key at the end.
    if (resume) {
      for await (const piece of resume.prefix) {
        h?.update(piece);
        size += piece.length;
      }
    }
    const opening = this.cipher.opening();
    // Large objects are decrypted on a worker (seipd-pool), the content hash on another (hash-worker).
    const offThread = worthAThread(layout?.chunkSize ?? parsed.size);
    const where = layout ?? (await this.layoutOf(key));
    const names = this.objectNames(key, where);
    for (let index = resume?.chunks ?? 0; index < names.length; index++) {
      // The most this object may hold: what the key names (its chunk's share of it), or, for a key that names
      // no size, its chunk size; a key with neither is bounded only by the stored object (and one deflate layer).
      const most = pieceLength(parsed.size, where, index) ?? UNSIZED_OBJECT_LIMIT;
      const pieces =
        this.cipher.mode === 'none'
          ? this.store.get(names[index])
          : decryptMessage(this.store.get(names[index]), opening, { offThread, maxLength: most });
      let length = 0;
      for await (const piece of pieces) {
        length += piece.length;
        if (length > most) throw new ContentMismatchError(`content of ${key} is longer than its key says`);
        h?.update(piece);
        size += piece.length;
        progress?.(piece.length);
        yield piece;
      }
    }
    if (parsed.size !== undefined && parsed.size !== size) {
      throw new ContentMismatchError(`content of ${key} has ${size} bytes, the key says ${parsed.size}`);
    }
    if (h && (await h.digest()).toString('hex') !== keyDigest(parsed).toLowerCase()) {
      throw new ContentMismatchError(`content of ${key} does not match its hash`);
    }
  }

  /** Retrieves a key into `out`; the file appears only once content, MDC and hash are verified. */
  // A chunked key is retrieved into a partial file that a later get of the same key to the same place
  // resumes, from the last whole chunk; anything that fails verification throws the partial file away.
  async retrieveFile(key: string, out: string, progress?: Progress): Promise<void> {
    const layout = await this.layoutOf(key);
    const chunked = layout.chunkSize !== undefined && (layout.chunkCount ?? 0) > 1;
    const tmp = chunked
      ? join(dirname(out), `.${basename(out)}.coffre-partial-${keyDigest(parseKey(key)).slice(0, 16)}`)
      : join(dirname(out), `.${basename(out)}.coffre-tmp-${process.pid}`);
    let done = 0;
    if (chunked) {
      const have = (await stat(tmp).catch(() => undefined))?.size ?? 0;
      done = Math.min(Math.floor(have / layout.chunkSize!), layout.chunkCount! - 1);
      if (have > 0) await truncate(tmp, done * layout.chunkSize!);
    }
    const resume =
      done > 0
        ? {
            chunks: done,
            prefix: createReadStream(tmp, { end: done * layout.chunkSize! - 1 }) as AsyncIterable<Buffer>,
          }
        : undefined;
    try {
      await pipeline(
        Readable.from(this.content(key, layout, progress, resume)),
        createWriteStream(tmp, { mode: 0o644, flags: done > 0 ? 'a' : 'w', highWaterMark: 8 << 20 }),
      );
      await rename(tmp, out);
    } catch (err) {
      const keepForResume =
        chunked &&
        !(err instanceof ContentMismatchError) &&
        !(err instanceof IntegrityError) &&
        !(err instanceof OversizeError);
      if (!keepForResume) await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Decrypts and verifies without keeping the content (fsck --full). */
  async verify(key: string): Promise<void> {
    for await (const _ of this.content(key));
  }

  /** Names of the key's objects that are missing on the remote. */
  async missingObjects(key: string): Promise<string[]> {
    const names = this.objectNames(key, await this.layoutOf(key));
    const missing: string[] = [];
    for (const n of names) if (!(await this.store.has(n))) missing.push(n);
    return missing;
  }

  /** Removes every object of a key (all chunks, and a whole-key object if one exists). */
  async removeKey(key: string): Promise<void> {
    const layout = await this.layoutOf(key);
    const names = new Set(this.objectNames(key, layout));
    names.add(this.cipher.objectName(key));
    for (const n of names) await this.store.remove(n);
    this.log.record({ key, present: false });
  }
}
