// Test helper: a minimal HTTP server made only of the S3 authentication and body modules (no storage), so real
// S3 clients can be pointed at them. Every authenticated request's decoded body and digests are recorded.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3Error } from '../../../src/util/s3-error.js';
import { authenticateRequest, type PayloadMode } from '../../../src/api/s3/signature.js';
import { awsChunkedDecoderFor, isStreamingPayload } from '../../../src/api/s3/aws-chunked.js';
import {
  BodyVerifier,
  bodyExpectationsFromHeaders,
  type VerifiedBody,
} from '../../../src/api/s3/checksum.js';
import { ACCESS_KEY, REGION, SECRET_KEY } from './sigv4-client.js';

export interface Seen {
  method: string;
  path: string;
  query: string;
  mode: PayloadMode;
  presigned: boolean;
  body: Buffer;
  verified: VerifiedBody;
}

export interface AuthBodyServer {
  endpoint: string;
  seen: Seen[];
  errors: S3Error[];
  close(): Promise<void>;
}

/** GET answers `hello`, HEAD 404, `?location` an empty LocationConstraint, anything else 200 with the ETag. */
export async function startAuthBodyServer(): Promise<AuthBodyServer> {
  const seen: Seen[] = [];
  const errors: S3Error[] = [];
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const method = req.method ?? 'GET';
    try {
      const auth = await authenticateRequest(
        { method, path, query, headers: req.headers },
        { region: REGION, lookupSecret: async (id) => (id === ACCESS_KEY ? SECRET_KEY : undefined) },
      );
      const stages: Transform[] = [];
      let trailers: (() => Readonly<Record<string, string>>) | undefined;
      if (isStreamingPayload(auth)) {
        const decoder = awsChunkedDecoderFor(auth, req.headers);
        trailers = () => decoder.trailers;
        stages.push(decoder);
      }
      const verifier = new BodyVerifier(
        bodyExpectationsFromHeaders(req.headers, { expectedSha256: auth.expectedSha256, trailers }),
      );
      const out: Buffer[] = [];
      const sink = new Writable({
        write(c: Buffer, _e, cb) {
          out.push(c);
          cb();
        },
      });
      await pipeline([req, ...stages, verifier, sink]);
      const verified = verifier.result;
      seen.push({
        method,
        path,
        query,
        mode: auth.payloadMode,
        presigned: auth.presigned,
        body: Buffer.concat(out),
        verified,
      });
      if (query.startsWith('location')) {
        res.setHeader('content-type', 'application/xml');
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>',
        );
        return;
      }
      if (method === 'HEAD') {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('ETag', `"${verified.md5Hex}"`);
      if (verified.checksum) {
        res.setHeader(`x-amz-checksum-${verified.checksum.algorithm.toLowerCase()}`, verified.checksum.value);
      }
      res.end(method === 'GET' ? 'hello' : undefined);
    } catch (err) {
      const e = err instanceof S3Error ? err : new S3Error('InternalError', 500, String(err));
      errors.push(e);
      res.statusCode = e.status;
      res.setHeader('content-type', 'application/xml');
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${e.code}</Code><Message>${e.message}</Message></Error>`,
      );
      if (!req.complete) res.once('finish', () => req.destroy());
    }
  }
  const server = http.createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    errors,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
