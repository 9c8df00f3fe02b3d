// util/file-slice: bytes named by where they are in a file rather than carried, so that the thread that needs
// them (a worker decrypting a read) reads them itself instead of having them read and passed along.
import { open } from 'node:fs/promises';

/** Bytes [start, end) of the file at `path`. */
export interface FileSlice {
  path: string;
  start: number;
  end: number;
  /** The error message if the file is missing or shorter than the slice (names no path). */
  missing: string;
}

/** The error for a slice that cannot be read in full: named FileMissing, with the slice's own message. */
export function fileMissing(slice: FileSlice): Error {
  return Object.assign(new Error(slice.missing), { name: 'FileMissing' });
}

/** Reads a slice into a buffer of its own. Rejects with fileMissing() when the file is gone or too short. */
export async function readFileSlice(slice: FileSlice): Promise<Buffer> {
  const length = slice.end - slice.start;
  let fh;
  try {
    fh = await open(slice.path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fileMissing(slice);
    throw err;
  }
  try {
    const out = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(out, got, length - got, slice.start + got);
      if (bytesRead === 0) throw fileMissing(slice);
      got += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}
