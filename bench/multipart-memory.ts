// bench/multipart-memory: the server's peak RSS while one large object is uploaded in 64 MiB parts and then
// downloaded (issue 18 asks for at most 200 MiB with a 4 GiB object), beside its RSS at rest.
//
//   npx tsc -p tsconfig.json && node dist/bench/multipart-memory.js [objectMiB = 4096] [--sse-c]
//
// One server (same spawn as the tests); the client is the AWS SDK v3, parts sent one after the other, the
// download read and discarded as a stream. The peak (VmHWM) is reset before each phase where Linux allows, so
// the upload's and the download's peaks are each their own. A smaller object (e.g. 1024) keeps the part size
// and shows the same bound, since memory must not grow with the object.
import { loadavg } from 'node:os';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { startServer } from '../test/helpers/server.js';
import { customerKey } from '../test/security/ssec-helpers.js';
import { readFileSync } from 'node:fs';
import { currentRss, peakRss, resetPeakRss } from './lib/proc.js';

const MiB = 1024 * 1024;
const PART = 64 * MiB;

/** The largest anonymous and file-backed resident sizes seen while `work` runs (sampled), in bytes. */
async function sampled<T>(
  pid: number,
  work: () => Promise<T>,
): Promise<{ result: T; anon: number; file: number }> {
  let anon = 0;
  let file = 0;
  const field = (text: string, name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  const timer = setInterval(() => {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    anon = Math.max(anon, field(text, 'RssAnon'));
    file = Math.max(file, field(text, 'RssFile') + field(text, 'RssShmem'));
  }, 50);
  try {
    return { result: await work(), anon, file };
  } finally {
    clearInterval(timer);
  }
}

async function main(): Promise<void> {
  const objectMiB = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 4096);
  const sseC = process.argv.includes('--sse-c');
  const parts = Math.max(1, Math.ceil((objectMiB * MiB) / PART));
  const server = await startServer({ env: { COFFRE_LOG_LEVEL: 'warn' } });
  const pid = server.process.pid!;
  const s3 = server.client();
  const key = customerKey();
  const sse = sseC
    ? {
        SSECustomerAlgorithm: 'AES256',
        SSECustomerKey: key.b64,
      }
    : {};
  const mib = (b: number) => (b / MiB).toFixed(0);
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'memory' }));
    const atRest = currentRss(pid);
    const resettable = resetPeakRss(pid);
    const began = Date.now();
    const upload = await sampled(pid, async () => {
      const { UploadId } = await s3.send(
        new CreateMultipartUploadCommand({ Bucket: 'memory', Key: 'big', ...sse }),
      );
      const body = Buffer.alloc(PART, 7);
      const done: { ETag: string; PartNumber: number }[] = [];
      for (let n = 1; n <= parts; n++) {
        body.writeUInt32LE(n, 0); // every part distinct
        const r = await s3.send(
          new UploadPartCommand({
            Bucket: 'memory',
            Key: 'big',
            UploadId,
            PartNumber: n,
            Body: body,
            ...sse,
          }),
        );
        done.push({ ETag: r.ETag!, PartNumber: n });
      }
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'memory',
          Key: 'big',
          UploadId,
          MultipartUpload: { Parts: done },
        }),
      );
    });
    const uploadSeconds = (Date.now() - began) / 1000;
    const uploadPeak = peakRss(pid);
    resetPeakRss(pid);
    const got = Date.now();
    const download = await sampled(pid, async () => {
      const res = await s3.send(new GetObjectCommand({ Bucket: 'memory', Key: 'big', ...sse }));
      let bytes = 0;
      for await (const chunk of res.Body as Readable) bytes += (chunk as Buffer).length;
      return bytes;
    });
    const bytes = download.result;
    if (bytes !== parts * PART) throw new Error(`GET returned ${bytes} bytes, not ${parts * PART}`);
    const downloadSeconds = (Date.now() - got) / 1000;
    const downloadPeak = peakRss(pid);
    await s3.send(new DeleteObjectCommand({ Bucket: 'memory', Key: 'big' }));
    console.log(
      `${mib(parts * PART)} MiB object in ${parts} parts of 64 MiB${sseC ? ', SSE-C' : ''}: server RSS at rest ` +
        `${mib(atRest)} MiB; peak during upload ${mib(uploadPeak)} MiB (${uploadSeconds.toFixed(0)} s; ` +
        `anonymous ${mib(upload.anon)}, file-backed ${mib(upload.file)}), during download ` +
        `${mib(downloadPeak)} MiB (${downloadSeconds.toFixed(0)} s; anonymous ${mib(download.anon)}, ` +
        `file-backed ${mib(download.file)})` +
        `${resettable ? '' : ' (peaks not resettable here: each is since the start)'}; ` +
        `load average ${loadavg()[0]!.toFixed(1)}`,
    );
  } finally {
    key.raw.fill(0);
    s3.destroy();
    await server.stop();
    server.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
