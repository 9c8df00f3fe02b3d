// api/admin: the administration HTTP API (access keys, buckets, permissions) guarded by the admin token,
// with /health open and /metrics guarded by metrics_token when one is set. JSON in, JSON out.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { CoffreConfig } from '../../config/config.js';
import type { Model } from '../../model/model.js';
import type { AccessKeyRecord, BucketRecord } from '../../model/types.js';
import { S3Error } from '../../util/s3-error.js';
import type { S3Metrics } from './metrics.js';
import { checkBucketName } from '../s3/router.js';

export class AdminError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024;

// Tokens are compared through their SHA-256 so that neither length nor content leaks through timing.
export function tokenMatches(given: string | undefined, expected: string | undefined): boolean {
  if (!given || !expected) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h?.startsWith('Bearer ')) return undefined;
  return h.slice('Bearer '.length).trim();
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new AdminError(413, 'request body too large');
    parts.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const v: unknown = JSON.parse(Buffer.concat(parts).toString('utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new AdminError(400, 'request body must be a JSON object');
  }
}

export function keyInfo(model: Model, k: AccessKeyRecord, withSecret = false) {
  const buckets = model
    .listBuckets()
    .filter((b) => b.permissions[k.id])
    .map((b) => ({ name: b.name, id: b.id, ...b.permissions[k.id]! }));
  return {
    accessKeyId: k.id,
    name: k.name,
    ...(withSecret ? { secretAccessKey: k.secret } : {}),
    createdAt: new Date(k.createdAt).toISOString(),
    allowCreateBucket: k.allowCreateBucket,
    buckets,
  };
}

export function bucketInfo(model: Model, b: BucketRecord) {
  let objects = 0;
  let bytes = 0;
  for (const o of model.listObjects(b.id, '')) {
    objects++;
    bytes += o.size;
  }
  return {
    name: b.name,
    id: b.id,
    createdAt: new Date(b.createdAt).toISOString(),
    objects,
    bytes,
    keys: Object.entries(b.permissions).map(([accessKeyId, p]) => ({
      accessKeyId,
      name: model.getKey(accessKeyId)?.name,
      ...p,
    })),
    cors: b.cors ?? [],
  };
}

function bool(v: unknown, name: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new AdminError(400, `${name} must be true or false`);
  return v;
}

function str(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new AdminError(400, `${name} is required`);
  return v;
}

export class AdminServer {
  readonly server: http.Server | https.Server;

  constructor(
    private readonly deps: { config: CoffreConfig; model: Model; log: Logger; metrics: S3Metrics },
    tls?: https.ServerOptions,
  ) {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  }

  private send(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
    const text = contentType === 'application/json' ? JSON.stringify(body) + '\n' : String(body);
    res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { config, model, metrics } = this.deps;
    const url = new URL(req.url ?? '/', 'http://admin');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    try {
      if (url.pathname === '/health') return this.send(res, 200, { status: 'ok' });
      if (url.pathname === '/metrics') {
        if (config.admin.metricsToken && !tokenMatches(bearer(req), config.admin.metricsToken)) {
          throw new AdminError(403, 'a valid metrics token is required');
        }
        return this.send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
      }
      if (!tokenMatches(bearer(req), config.admin.adminToken))
        throw new AdminError(403, 'a valid admin token is required');
      const body = req.method === 'POST' || req.method === 'PATCH' ? await readJson(req) : {};
      return this.send(res, 200, await this.route(req.method ?? 'GET', parts, body));
    } catch (err) {
      if (err instanceof AdminError) return this.send(res, err.status, { error: err.message });
      if (err instanceof S3Error) return this.send(res, err.status, { error: err.message, code: err.code });
      this.deps.log.error({ err: String((err as Error)?.message ?? err) }, 'admin request failed');
      return this.send(res, 500, { error: 'internal error' });
    }
  }

  private requireKey(idOrName: string): AccessKeyRecord {
    const k = this.deps.model.findKey(idOrName);
    if (!k) throw new AdminError(404, `no access key ${idOrName}`);
    return k;
  }

  private requireBucket(name: string): BucketRecord {
    const b = this.deps.model.bucketByName(name);
    if (!b) throw new AdminError(404, `no bucket ${name}`);
    return b;
  }

  private async route(method: string, parts: string[], body: Record<string, unknown>): Promise<unknown> {
    const model = this.deps.model;
    const [version, resource, id, action] = parts;
    if (version !== 'v1') throw new AdminError(404, 'unknown endpoint');
    if (resource === 'keys') {
      if (!id && method === 'GET') return model.listKeys().map((k) => ({ accessKeyId: k.id, name: k.name }));
      if (!id && method === 'POST') {
        const k = await model.createKey(
          str(body.name, 'name'),
          bool(body.allowCreateBucket, 'allowCreateBucket'),
        );
        return keyInfo(model, k, true);
      }
      if (id && !action && method === 'GET')
        return keyInfo(model, this.requireKey(id), body.showSecret === true);
      if (id && !action && method === 'PATCH') {
        const k = this.requireKey(id);
        await model.updateKey(k.id, { allowCreateBucket: bool(body.allowCreateBucket, 'allowCreateBucket') });
        return keyInfo(model, model.getKey(k.id)!);
      }
      if (id && !action && method === 'DELETE') {
        const k = this.requireKey(id);
        await model.deleteKey(k.id);
        return { deleted: k.id };
      }
    }
    if (resource === 'buckets') {
      if (!id && method === 'GET')
        return model
          .listBuckets()
          .map((b) => ({ name: b.name, id: b.id, createdAt: new Date(b.createdAt).toISOString() }));
      if (!id && method === 'POST') {
        const name = str(body.name, 'name');
        try {
          checkBucketName(name);
        } catch {
          throw new AdminError(
            400,
            `invalid bucket name "${name}": use 3-63 lower-case letters, digits, dots and hyphens`,
          );
        }
        if (model.bucketByName(name)) throw new AdminError(409, `bucket ${name} already exists`);
        return bucketInfo(model, await model.createBucket(name));
      }
      if (id && !action && method === 'GET') return bucketInfo(model, this.requireBucket(id));
      if (id && !action && method === 'DELETE') {
        this.requireBucket(id);
        try {
          await model.deleteBucket(id);
        } catch (err) {
          if (err instanceof S3Error && err.code === 'BucketNotEmpty')
            throw new AdminError(409, `bucket ${id} is not empty`);
          throw err;
        }
        return { deleted: id };
      }
      if (id && (action === 'allow' || action === 'deny') && method === 'POST') {
        const b = this.requireBucket(id);
        const k = this.requireKey(str(body.accessKeyId, 'accessKeyId'));
        const current = b.permissions[k.id] ?? { read: false, write: false, owner: false };
        const want = {
          read: bool(body.read, 'read'),
          write: bool(body.write, 'write'),
          owner: bool(body.owner, 'owner'),
        };
        if (!want.read && !want.write && !want.owner)
          throw new AdminError(400, 'say which permission: read, write and/or owner');
        const next =
          action === 'allow'
            ? {
                read: current.read || want.read,
                write: current.write || want.write,
                owner: current.owner || want.owner,
              }
            : {
                read: current.read && !want.read,
                write: current.write && !want.write,
                owner: current.owner && !want.owner,
              };
        return bucketInfo(model, await model.setPermission(b.id, k.id, next));
      }
    }
    throw new AdminError(404, 'unknown endpoint');
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections?.();
    });
  }
}
