// api/s3/checksum-composite: the checksum of a multipart object, S3's "checksum of checksums": the digest of
// the concatenated raw part digests, suffixed with the part count.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { crc32c } from './checksum.js';

export function combineChecksums(algorithm: string, parts: Record<string, string>[]): Record<string, string> {
  const raw = parts.map((p) => p[algorithm]);
  if (raw.some((v) => v === undefined)) return {};
  const joined = Buffer.concat(raw.map((v) => Buffer.from(v!, 'base64')));
  let digest: Buffer;
  switch (algorithm) {
    case 'CRC32': {
      digest = Buffer.alloc(4);
      digest.writeUInt32BE(crc32(joined) >>> 0);
      break;
    }
    case 'CRC32C': {
      digest = Buffer.alloc(4);
      digest.writeUInt32BE(crc32c(joined) >>> 0);
      break;
    }
    case 'SHA1':
      digest = createHash('sha1').update(joined).digest();
      break;
    case 'SHA256':
      digest = createHash('sha256').update(joined).digest();
      break;
    default:
      return {};
  }
  return { [algorithm]: `${digest.toString('base64')}-${parts.length}` };
}
