// bench/lib/body: request bodies for the S3 benches, generated piece by piece so a 1 GiB object is never in
// memory. Every piece is a random MiB whose first bytes carry a run id and a counter, so that no two blocks of
// any object are equal (content-addressed storage would store a repeated block once and flatter plaintext).
import { randomBytes } from 'node:crypto';

/** Largest piece nextPiece returns. */
export const PIECE = 1024 * 1024;
const template = randomBytes(PIECE);
const runId = randomBytes(8);
let pieceCounter = 0;

/** A fresh distinct piece of `length` (≤ PIECE) bytes. */
export function nextPiece(length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  template.copy(b, 0, 0, length);
  if (length >= 16) {
    runId.copy(b, 0);
    b.writeDoubleLE(pieceCounter++, 8);
  }
  return b;
}
