// backend/object-requests: the three requests every object read and write makes of the backend — PutObject,
// GetObject and HeadObject — signed with SigV4 and sent with node:http directly. Everything else a gateway asks
// of its backend goes through the AWS SDK (backend/client). Why two clients: on a 4 KiB object the SDK's
// middleware stack (endpoint rules, schema serde, retry and checksum middlewares, a signer that hashes its
// inputs afresh) costs the gateway more CPU than sealing, opening and answering the object together; these
// three requests are the gateway's whole hot path, and their shape is fixed.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { BackendConfig } from '../config/config.js';
import {
  SCOPE_TERMINATOR,
  SIGV4_ALGORITHM,
  UNSIGNED_PAYLOAD,
  deriveSigningKey,
  hmacSha256,
  stringToSign,
  uriEncode,
} from '../crypto/sigv4.js';

/** Longest error body read from the backend: an S3 error document is well under this. */
const MAX_ERROR_BODY = 64 * 1024;
const META_PREFIX = 'x-amz-meta-';

/** A backend's answer that is not a success: its status, its S3 error code if it gave one, its headers. */
export class BackendRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    readonly headers: IncomingHttpHeaders,
  ) {
    super(`the storage backend answered ${status}${code ? ` ${code}` : ''}`);
    this.name = code ?? `Http${status}`;
  }
}

/** What a HEAD or a GET says of a stored object. */
export interface ObjectHead {
  metadata: Record<string, string>;
  /** Bytes in this answer's body (for a range, the range's). */
  contentLength: number;
  /** The object's whole length (from Content-Range for a range). */
  totalLength: number;
  etag: string | undefined;
  lastModified: Date | undefined;
  versionId: string | undefined;
}

export interface GetOptions {
  versionId?: string;
  /** Bytes [start, end) of the object; the whole object without. */
  range?: { start: number; end: number };
  ifMatch?: string;
}

export interface PutOptions {
  contentLength: number;
  contentType: string;
  metadata: Record<string, string>;
  ifMatch?: string;
  ifNoneMatch?: string;
  signal?: AbortSignal;
}

export interface Connection {
  connectTimeoutMs: number;
  socketTimeoutMs: number;
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
}

export class ObjectRequests {
  private readonly base: URL;
  private readonly basePath: string;

  constructor(
    private readonly config: BackendConfig,
    private readonly secretAccessKey: string,
    private readonly connection: Connection,
  ) {
    this.base = new URL(config.endpoint);
    this.basePath = this.base.pathname.replace(/\/+$/, '');
  }

  async head(key: string, versionId?: string): Promise<ObjectHead> {
    const res = await this.send('HEAD', key, versionId, {});
    res.resume();
    return headOf(res);
  }

  /** The object's head and body; the caller reads the body to its end or destroys it. */
  async get(key: string, opts: GetOptions = {}): Promise<ObjectHead & { body: IncomingMessage }> {
    const headers: Record<string, string> = {};
    if (opts.range) headers.range = `bytes=${opts.range.start}-${opts.range.end - 1}`;
    if (opts.ifMatch !== undefined) headers['if-match'] = opts.ifMatch;
    const res = await this.send('GET', key, opts.versionId, headers);
    return { ...headOf(res), body: res };
  }

  async put(
    key: string,
    body: Readable | Buffer,
    opts: PutOptions,
  ): Promise<{ etag?: string; versionId?: string }> {
    const headers: Record<string, string> = {
      'content-length': String(opts.contentLength),
      'content-type': opts.contentType,
    };
    for (const [name, value] of Object.entries(opts.metadata))
      headers[META_PREFIX + name.toLowerCase()] = value;
    if (opts.ifMatch !== undefined) headers['if-match'] = opts.ifMatch;
    if (opts.ifNoneMatch !== undefined) headers['if-none-match'] = opts.ifNoneMatch;
    const res = await this.send('PUT', key, undefined, headers, body, opts.signal);
    res.resume();
    return { etag: single(res.headers.etag), versionId: single(res.headers['x-amz-version-id']) };
  }

  private target(key: string): { hostname: string; host: string; path: string } {
    const encodedKey = uriEncode(key, true);
    if (this.config.pathStyle)
      return {
        hostname: this.base.hostname,
        host: this.base.host,
        path: `${this.basePath}/${uriEncode(this.config.bucket)}/${encodedKey}`,
      };
    return {
      hostname: `${this.config.bucket}.${this.base.hostname}`,
      host: `${this.config.bucket}.${this.base.host}`,
      path: `${this.basePath}/${encodedKey}`,
    };
  }

  // Sends one signed request; resolves with a 2xx answer (its body unread), rejects with a BackendRequestError
  // for any other answer, or with the connection's error.
  private send(
    method: 'GET' | 'HEAD' | 'PUT',
    key: string,
    versionId: string | undefined,
    extra: Record<string, string>,
    body?: Readable | Buffer,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const { hostname, host, path } = this.target(key);
    const query = versionId !== undefined ? `versionId=${uriEncode(versionId)}` : '';
    const headers = this.signed(method, host, path, query, extra);
    const secure = this.base.protocol === 'https:';
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = (secure ? https : http).request({
        method,
        hostname: hostname.replace(/^\[|\]$/g, ''),
        port: this.base.port || (secure ? 443 : 80),
        path: query ? `${path}?${query}` : path,
        headers,
        agent: secure ? this.connection.httpsAgent : this.connection.httpAgent,
        timeout: this.connection.socketTimeoutMs,
        ...(signal ? { signal } : {}),
      });
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(
          () => req.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })),
          this.connection.connectTimeoutMs,
        );
        socket.once('connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      });
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error('socket timed out'), { code: 'ETIMEDOUT' })),
      );
      req.on('error', reject);
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          resolve(res);
          return;
        }
        if (body && !Buffer.isBuffer(body)) body.unpipe(req);
        errorOf(res, status).then(reject, reject);
      });
      // A body in memory goes in the same write as the headers.
      if (Buffer.isBuffer(body) || !body) req.end(body);
      else {
        body.on('error', (err) => req.destroy(err));
        body.pipe(req);
      }
    });
  }

  private signed(
    method: string,
    host: string,
    path: string,
    query: string,
    extra: Record<string, string>,
  ): Record<string, string> {
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
    const date = amzDate.slice(0, 8);
    const headers: Record<string, string> = {
      ...extra,
      host,
      'x-amz-date': amzDate,
      'x-amz-content-sha256': UNSIGNED_PAYLOAD,
    };
    const names = Object.keys(headers).sort();
    const canonicalHeaders = names.map((n) => `${n}:${headers[n]!.trim().replace(/\s+/g, ' ')}\n`).join('');
    const signedHeaders = names.join(';');
    const canonicalRequest = [method, path, query, canonicalHeaders, signedHeaders, UNSIGNED_PAYLOAD].join(
      '\n',
    );
    const scope = `${date}/${this.config.region}/s3/${SCOPE_TERMINATOR}`;
    const signingKey = deriveSigningKey(this.secretAccessKey, date, this.config.region);
    const signature = hmacSha256(signingKey, stringToSign(amzDate, scope, canonicalRequest)).toString('hex');
    signingKey.fill(0);
    headers.authorization = `${SIGV4_ALGORITHM} Credential=${this.config.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function headOf(res: IncomingMessage): ObjectHead {
  const h = res.headers;
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(h))
    if (name.startsWith(META_PREFIX) && typeof value === 'string')
      metadata[name.slice(META_PREFIX.length)] = value;
  const contentLength = Number(h['content-length'] ?? NaN);
  const range = /^bytes \d+-\d+\/(\d+)$/.exec(single(h['content-range']) ?? '');
  const modified = h['last-modified'] ? new Date(h['last-modified']) : undefined;
  return {
    metadata,
    contentLength,
    totalLength: range ? Number(range[1]) : contentLength,
    etag: single(h.etag),
    lastModified: modified && !Number.isNaN(modified.getTime()) ? modified : undefined,
    versionId: single(h['x-amz-version-id']),
  };
}

// The backend's error answer: its code from the S3 error document, if any (a HEAD's answer has none).
async function errorOf(res: IncomingMessage, status: number): Promise<BackendRequestError> {
  const pieces: Buffer[] = [];
  let length = 0;
  try {
    for await (const piece of res as AsyncIterable<Buffer>) {
      pieces.push(piece);
      length += piece.length;
      // An error document is short: what a backend sends past this is not read (nor waited for).
      if (length >= MAX_ERROR_BODY) break;
    }
  } catch {
    // A cut error body still tells its status.
  } finally {
    res.destroy();
  }
  const text = Buffer.concat(pieces).subarray(0, MAX_ERROR_BODY).toString('utf8');
  const code =
    /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(text)?.[1] ?? (status === 404 ? 'NotFound' : undefined);
  return new BackendRequestError(status, code, res.headers);
}
