// util/bytes: small byte and string helpers.

// Orders strings by their UTF-8 bytes (S3's key order), which differs from JavaScript's UTF-16 order only
// when characters outside the Basic Multilingual Plane meet characters U+E000–U+FFFF.
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  // eslint-disable-next-line no-control-regex
  if (/^[\u0000-\ud7ff]*$/.test(a) && /^[\u0000-\ud7ff]*$/.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
