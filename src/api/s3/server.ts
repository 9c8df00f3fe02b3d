// api/s3/server: the S3 HTTP(S) endpoint. It names the request (bucket, key, operation), authenticates it,
// hands it to the handler for its operation and turns any S3Error into the XML error clients expect.
import { closeServer, listenOn, refuseTunnels } from '../../util/http-server.js';
import { clientTransport } from '../../util/client-transport.js';
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { CoffreConfig } from '../../config/config.js';
import type { ObjectStore } from '../../model/store.js';
import type { AccessKeyRecord } from '../../model/types.js';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import { awsChunkedDecoderFor, isStreamingPayload } from './aws-chunked.js';
import { BodyVerifier, bodyExpectationsFromHeaders } from './checksum.js';
import type { AccountContext, BucketContext, CopyContext, RequestBody, S3Context } from './context.js';
import { authenticateRequest, hasCredentials, type AuthContext } from './signature.js';
import {
  AUTHORIZATION,
  checkObjectKey,
  isAccountOperation,
  isCopyOperation,
  isPostPolicyOperation,
  isUnauthenticated,
  policyActionOf,
  routeRequest,
  type AccountOperation,
  type BucketOperation,
  type CopyOperation,
  type Operation,
} from './router.js';
import {
  NO_PERMISSION,
  allowedBucket,
  mayAccess,
  storedPolicy,
  versionedAction,
  type RequestFacts,
} from './authorize.js';
import { grantsAnyone } from './policy.js';
import {
  deleteBucketPolicy,
  getBucketPolicy,
  getBucketPolicyStatus,
  putBucketPolicy,
} from './bucket-policy.js';
import type { TLSSocket } from 'node:tls';
import { parsePostObject } from './post-policy.js';
import {
  bucketOwners,
  deleteBucketSetting,
  getBucketAcl,
  getBucketSetting,
  getObjectAcl,
  putAcl,
  refuseAclGrants,
} from './bucket-settings.js';
import { errorXml, sendError } from './response.js';
import { addCorsHeaders, deleteBucketCors, getBucketCors, preflight, putBucketCors } from './cors.js';
import { createBucket, deleteBucket, getBucketLocation, headBucket, listBuckets } from './bucket.js';
import { getBucketVersioning, putBucketVersioning } from './versioning.js';
import { deleteBucketLifecycle, getBucketLifecycle, putBucketLifecycle } from './lifecycle.js';
import {
  getObjectLegalHold,
  getObjectLockConfiguration,
  getObjectRetention,
  putObjectLegalHold,
  putObjectLockConfiguration,
  putObjectRetention,
} from './object-lock.js';
import { listMultipartUploads, listObjectVersions, listObjects } from './list.js';
import { deleteObject, deleteObjects } from './delete.js';
import { putObject } from './put.js';
import { getObject } from './get.js';
import { copyObject, copySourceOf, uploadPartCopy } from './copy.js';
import {
  abortMultipartUpload,
  completeMultipartUpload,
  createMultipartUpload,
  listParts,
  uploadPart,
} from './multipart.js';
import { postObject } from './post-object.js';
import type { S3Metrics } from '../admin/metrics.js';
import type { SseS3Keys } from '../../sse/sse-s3-keys.js';
import {
  deleteBucketTagging,
  deleteObjectTagging,
  getBucketTagging,
  getObjectTagging,
  putBucketTagging,
  putObjectTagging,
} from './tagging.js';
import { deleteBucketEncryption, getBucketEncryption, putBucketEncryption } from './bucket-encryption.js';

// One handler table per kind of authorization (router.ts AUTHORIZATION): a handler of a bucket operation can
// only be reached with the bucket already allowed, and the compiler holds each table complete.
const ACCOUNT_HANDLERS: Record<AccountOperation, (ctx: AccountContext) => Promise<void>> = {
  ListBuckets: listBuckets,
  CreateBucket: createBucket,
};

const BUCKET_HANDLERS: Record<BucketOperation, (ctx: BucketContext) => Promise<void>> = {
  HeadBucket: headBucket,
  DeleteBucket: deleteBucket,
  GetBucketLocation: getBucketLocation,
  GetBucketVersioning: getBucketVersioning,
  PutBucketVersioning: putBucketVersioning,
  PutBucketLifecycle: putBucketLifecycle,
  GetBucketLifecycle: getBucketLifecycle,
  DeleteBucketLifecycle: deleteBucketLifecycle,
  GetObjectLockConfiguration: getObjectLockConfiguration,
  PutObjectLockConfiguration: putObjectLockConfiguration,
  GetObjectRetention: getObjectRetention,
  PutObjectRetention: putObjectRetention,
  GetObjectLegalHold: getObjectLegalHold,
  PutObjectLegalHold: putObjectLegalHold,
  GetBucketAcl: getBucketAcl,
  PutBucketAcl: putAcl,
  GetBucketSetting: getBucketSetting,
  DeleteBucketSetting: deleteBucketSetting,
  GetObjectAcl: getObjectAcl,
  PutObjectAcl: putAcl,
  GetObjectTagging: getObjectTagging,
  PutObjectTagging: putObjectTagging,
  DeleteObjectTagging: deleteObjectTagging,
  PutBucketTagging: putBucketTagging,
  GetBucketTagging: getBucketTagging,
  DeleteBucketTagging: deleteBucketTagging,
  PutBucketCors: putBucketCors,
  PutBucketEncryption: putBucketEncryption,
  GetBucketEncryption: getBucketEncryption,
  DeleteBucketEncryption: deleteBucketEncryption,
  GetBucketCors: getBucketCors,
  DeleteBucketCors: deleteBucketCors,
  PutBucketPolicy: putBucketPolicy,
  GetBucketPolicy: getBucketPolicy,
  DeleteBucketPolicy: deleteBucketPolicy,
  GetBucketPolicyStatus: getBucketPolicyStatus,
  ListObjects: (ctx) => listObjects(ctx, false),
  ListObjectsV2: (ctx) => listObjects(ctx, true),
  ListObjectVersions: listObjectVersions,
  ListMultipartUploads: listMultipartUploads,
  DeleteObjects: deleteObjects,
  PutObject: putObject,
  GetObject: (ctx) => getObject(ctx, false),
  HeadObject: (ctx) => getObject(ctx, true),
  DeleteObject: deleteObject,
  CreateMultipartUpload: createMultipartUpload,
  UploadPart: uploadPart,
  CompleteMultipartUpload: completeMultipartUpload,
  AbortMultipartUpload: abortMultipartUpload,
  ListParts: listParts,
};

const COPY_HANDLERS: Record<CopyOperation, (ctx: CopyContext) => Promise<void>> = {
  CopyObject: copyObject,
  UploadPartCopy: uploadPartCopy,
};

const ACL_CARRYING_WRITES = new Set<Operation>(['PutObject', 'CopyObject', 'CreateMultipartUpload']);

// An anonymous request carries no signature: its body is read as it comes (no payload hash to check).
const ANONYMOUS: AuthContext = {
  accessKeyId: '',
  payloadMode: 'unsigned',
  seedSignature: '',
  signingKey: Buffer.alloc(0),
  scope: '',
  amzDate: '',
  presigned: false,
};

// As S3: a multipart upload is always someone's, even in a bucket anyone may write to.
const ANONYMOUS_REFUSED = new Set<Operation>(['CreateMultipartUpload']);

function tlsVersionOf(socket: Socket): string | undefined {
  const protocol = (socket as Partial<TLSSocket>).getProtocol?.();
  return typeof protocol === 'string' ? protocol.replace(/^TLSv/, '') : undefined;
}

export interface S3ServerDeps {
  config: CoffreConfig;
  store: ObjectStore;
  log: Logger;
  metrics?: S3Metrics;
  sseS3?: SseS3Keys;
}

export const MAX_HEADER_BYTES = 16 * 1024;
// How long the rest of a refused request's body is still read after the error response has been written.
const LINGER_MS = 5_000;
// A refused request whose whole body is at most this large is read to its end and the connection kept; a
// larger (or unsized) body is not worth receiving, and the connection ends after the answer.
export const DRAIN_MAX_BYTES = 64 * 1024;

// Whether the unread rest of a refused request's body is small enough to read and throw away, keeping the
// connection for the client's next request. The declared size bounds what is left.
function drainable(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  const declared = Number(req.headers['content-length'] ?? 0);
  return Number.isSafeInteger(declared) && declared <= DRAIN_MAX_BYTES;
}

// An error is answered while the body may still be arriving. Either way the unread rest is read and thrown
// away ("lingering close"): a client still sending then reads the error instead of a reset connection
// (closing a socket with unread input sends a TCP RST, which can destroy the response before the client
// reads it). A small rest keeps the connection for the next request; a large one is answered with
// `Connection: close` and the connection is half-closed right after the answer, so the client learns at once
// that it is over and retries on a new one, instead of waiting on a connection the server still reads.
// Either way a client still sending LINGER_MS after the answer is cut off.
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  err: S3Error,
  resource: string,
  requestId: string,
): void {
  const unread = !req.complete;
  const keep = !unread || drainable(req);
  if (!keep) lingerThenClose(req, res.socket);
  sendError(res, err, req.method ?? 'GET', resource, requestId, { close: !keep });
  if (!unread) return;
  req.unpipe(); // from a body decoder or verifier that stopped reading
  req.resume();
  res.once('finish', () => {
    if (req.complete) return;
    const timer = setTimeout(() => req.destroy(), LINGER_MS);
    timer.unref();
    req.once('end', () => clearTimeout(timer));
    req.once('close', () => clearTimeout(timer));
  });
}

// node ends a connection whose response says `Connection: close` by destroying the socket as soon as the
// response is written (socket.destroySoon), which resets it if input is still arriving. Here the socket is
// only half-closed (FIN after the answer) and destroyed once the body has been read to its end or the
// client has closed its side (refuse() cuts it LINGER_MS after the answer otherwise).
function lingerThenClose(req: IncomingMessage, socket: Socket | null): void {
  if (!socket) return;
  socket.destroySoon = () => {
    let written = false;
    let read = req.complete;
    const closeWhenDone = () => {
      if (written && read) socket.destroy();
    };
    socket.once('finish', () => {
      written = true;
      closeWhenDone();
    });
    req.once('end', () => {
      read = true;
      closeWhenDone();
    });
    socket.end();
  };
}

// Splits the request target into bucket and key: virtual-hosted style when the Host is a subdomain of
// root_domain, path style otherwise.
export function locate(
  rawPath: string,
  host: string | undefined,
  rootDomain: string | undefined,
): { bucket?: string; key?: string } {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw S3Errors.invalidArgument('The request path is not valid percent-encoding');
  }
  const hostname = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  if (rootDomain && hostname.endsWith('.' + rootDomain.toLowerCase())) {
    const bucket = hostname.slice(0, -(rootDomain.length + 1));
    const key = path.startsWith('/') ? path.slice(1) : path;
    return checkedLocation(bucket, key === '' ? undefined : key);
  }
  const trimmed = path.startsWith('/') ? path.slice(1) : path;
  if (trimmed === '') return {};
  const slash = trimmed.indexOf('/');
  if (slash < 0) return checkedLocation(trimmed, undefined);
  const key = trimmed.slice(slash + 1);
  return checkedLocation(trimmed.slice(0, slash), key === '' ? undefined : key);
}

// No bucket can have a longer name (S3's limit, old buckets included), and no key is longer than S3 allows:
// such a request names nothing that exists, and is refused before it reaches a lookup.
const MAX_BUCKET_NAME = 255;

function checkedLocation(bucket: string, key: string | undefined): { bucket?: string; key?: string } {
  if (bucket.length > MAX_BUCKET_NAME)
    throw new S3Error('InvalidBucketName', 400, 'The specified bucket is not valid.');
  if (key !== undefined) checkObjectKey(key);
  return { bucket, key };
}

// The body of a request, verified as it streams: by its signature (`auth`, when the request was signed with
// SigV4) and the digests its headers declare. The admin console's transfers carry no signature (auth absent).
export function makeBody(
  req: IncomingMessage,
  auth?: AuthContext,
): (opts?: { md5?: boolean }) => RequestBody {
  let body: RequestBody | undefined;
  return (opts = {}) => {
    if (body) return body;
    let source: Readable = req;
    let trailers: (() => Readonly<Record<string, string>>) | undefined;
    if (auth && isStreamingPayload(auth)) {
      const decoder = awsChunkedDecoderFor(auth, req.headers);
      source = pipeline(req, decoder, () => undefined);
      trailers = () => decoder.trailers;
    }
    const expect = bodyExpectationsFromHeaders(req.headers, {
      expectedSha256: auth?.expectedSha256,
      trailers,
    });
    if (opts.md5 === false && expect.contentMd5 === undefined) expect.md5 = false;
    const verifier = new BodyVerifier(expect);
    const stream = pipeline(source, verifier, () => undefined);
    body = {
      stream,
      digests: () => {
        const r = verifier.result;
        const checksums: Record<string, string> = {};
        if (r.checksum) checksums[r.checksum.algorithm] = r.checksum.value;
        return { md5: Buffer.from(r.md5Hex ?? '', 'hex'), checksums };
      },
    };
    return body;
  };
}

export class S3Server {
  readonly server: http.Server | https.Server;

  constructor(
    private readonly deps: S3ServerDeps,
    tls?: https.ServerOptions,
  ) {
    // handle() answers every error it meets; this catch is the last guard, so that no request can become an
    // unhandled rejection.
    const handler = (req: IncomingMessage, res: ServerResponse) =>
      void this.handle(req, res).catch((err: unknown) => {
        this.deps.log.error({ err: String((err as Error)?.message ?? err) }, 'request failed');
        if (!res.headersSent) refuse(req, res, S3Errors.internal(), '', '');
        else res.destroy();
      });
    const s3Config = deps.config.s3Api;
    // Headers must arrive within the unauthenticated bound (checked every second, not every 30 s, so the
    // bound holds); a body's total time is not bounded — a large upload at a normal pace must not be cut —
    // but a silent connection is (server.timeout below), and so is the time before authentication (handle).
    const options = {
      maxHeaderSize: MAX_HEADER_BYTES,
      requestTimeout: 0,
      headersTimeout: s3Config.unauthenticatedTimeoutSecs * 1000,
      keepAliveTimeout: 65_000,
      connectionsCheckingInterval: 1_000,
    };
    this.server = tls
      ? https.createServer({ ...options, ...tls }, handler)
      : http.createServer(options, handler);
    // No 'timeout' listener: node destroys a socket that stays silent this long.
    this.server.timeout = s3Config.idleTimeoutSecs * 1000;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
      this.clientError(err, socket),
    );
    // node answers 417 itself to any Expect but 100-continue. An empty one (some clients send `Expect:`
    // with no value) asks for nothing: served as if absent, as S3 does. Others still get 417, in S3's words.
    this.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      if (String(req.headers.expect ?? '').trim() === '') return handler(req, res);
      refuse(
        req,
        res,
        new S3Error('ExpectationFailed', 417, 'The Expect header of the request cannot be met.'),
        '',
        randomBytes(8).toString('hex').toUpperCase(),
      );
    });
    refuseTunnels(this.server);
  }

  // Requests node's parser refuses (oversized headers, garbage) still get an S3 error, then the connection closes.
  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const e = tooLarge
      ? new S3Error(
          'RequestHeaderSectionTooLarge',
          400,
          `Your request header section exceeds the maximum allowed size (${MAX_HEADER_BYTES} bytes).`,
        )
      : new S3Error('BadRequest', 400, 'The request could not be parsed as HTTP.');
    const body = errorXml(e, '', randomBytes(8).toString('hex'));
    socket.end(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { config, store, log } = this.deps;
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const started = process.hrtime.bigint();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', requestId);
    res.setHeader('Server', 'coffre');
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
    const rawQuery = q >= 0 ? rawUrl.slice(q + 1) : '';
    let operation: Operation | 'Unknown' = 'Unknown';
    let bucketName: string | undefined;
    let objectKey: string | undefined;
    let refusal: { code: string; message: string } | undefined;
    let signingKey: Buffer | undefined;
    // Answers on one connection follow each other, so the socket's write counter gives this answer's bytes. (Its
    // read counter does not: the request's first bytes were read before this handler ran.)
    const socket = req.socket;
    const writtenBefore = socket.bytesWritten;
    const declaredLength = /^\d+$/.test(req.headers['content-length'] ?? '')
      ? Number(req.headers['content-length'])
      : undefined;
    // One line per request once its answer has gone (or the connection broke): what an operator reads.
    // Object names are logged (they are in clear in the metadata too); no header value, key or body is.
    res.once('close', () =>
      log.info(
        {
          requestId,
          method,
          operation,
          bucket: bucketName,
          key: objectKey,
          status: res.statusCode,
          bytesIn: declaredLength,
          bytesOut: socket.bytesWritten - writtenBefore,
          ms: Math.round(Number(process.hrtime.bigint() - started) / 1e6),
          // Every refusal says why: its S3 error, or for an answer written without one, the HTTP reason.
          ...(refusal
            ? { error: refusal.code, reason: refusal.message }
            : res.statusCode >= 400
              ? { reason: http.STATUS_CODES[res.statusCode] ?? 'error' }
              : {}),
          ...(res.writableFinished ? {} : { aborted: true }),
        },
        's3 request',
      ),
    );
    // Until the request is authenticated it may hold the connection only so long, whatever it sends (a
    // PostObject's form is read before its policy can be checked).
    const unauthenticated = setTimeout(() => req.destroy(), config.s3Api.unauthenticatedTimeoutSecs * 1000);
    unauthenticated.unref();
    const authenticated = () => clearTimeout(unauthenticated);
    try {
      const located = locate(rawPath, req.headers.host, config.s3Api.rootDomain);
      bucketName = located.bucket;
      objectKey = located.key;
      const query = new URLSearchParams(rawQuery);
      // A request for an operation that does not exist (or a method its resource does not take) is answered
      // as S3 does: once it is authenticated (an anonymous one gets AccessDenied, like any it is not granted).
      let routeError: unknown;
      try {
        operation = routeRequest(method, located.bucket, located.key, query, req.headers);
      } catch (err) {
        routeError = err;
      }
      if (operation !== 'Unknown' && isUnauthenticated(operation)) {
        await preflight(store, located.bucket, req, res);
        return;
      }
      const transport = clientTransport(req, config.trustedProxies);
      const { secure, fromLoopback } = transport;
      const facts = (authType: RequestFacts['authType']): RequestFacts => ({
        headers: req.headers,
        query,
        secure,
        clientAddress: transport.clientAddress,
        authType,
        tlsVersion: tlsVersionOf(req.socket),
        store,
      });
      // The key record is looked up once: the signature (or form policy) check needs its secret, and the
      // request its grants (on a gateway node each lookup is a call to the metadata node).
      const looked: { record?: AccessKeyRecord } = {};
      const lookupSecret = async (id: string) => {
        looked.record = await store.getKey(id);
        return looked.record?.secret;
      };
      if (operation !== 'Unknown' && isPostPolicyOperation(operation)) {
        // The form's policy signature is checked before anything about the bucket is used: an unsigned form
        // learns nothing, not even whether the bucket exists. One without a policy is read only where the
        // bucket's policy may let everyone write.
        const name = located.bucket!;
        const bucket = await store.bucketByName(name);
        const policy = bucket && storedPolicy(bucket);
        const upload = await parsePostObject(req, req.headers['content-type'], {
          bucket: name,
          region: config.s3Api.s3Region,
          lookupSecret,
          allowAnonymous: typeof policy === 'object' && grantsAnyone(policy),
        });
        const accessKey = upload.accessKeyId === looked.record?.id ? looked.record : undefined;
        if (upload.accessKeyId !== undefined && !accessKey) throw S3Errors.accessDenied();
        if (accessKey) authenticated();
        const allowed = await allowedBucket(bucket, name, accessKey, AUTHORIZATION[operation].bucket, {
          facts: facts(accessKey ? 'POST' : undefined),
          access: { action: 's3:PutObject', key: upload.key },
          operation,
        });
        authenticated();
        await postObject(
          { req, res, store, config, requestId, secure, fromLoopback, sseS3: this.deps.sseS3, ...allowed },
          upload,
        );
        return;
      }
      // The bucket's record is looked up while the signature is checked, not after: its answer is used only
      // once the request is authenticated and authorized.
      const bucketLookup =
        located.bucket === undefined || routeError !== undefined
          ? undefined
          : store.bucketByName(located.bucket);
      bucketLookup?.catch(() => {}); // a failure surfaces where the record is awaited, if it ever is
      const request = { method, path: rawPath, query: rawQuery, headers: req.headers };
      let accessKey: AccessKeyRecord | undefined;
      let auth: AuthContext = ANONYMOUS;
      if (hasCredentials(request)) {
        auth = await authenticateRequest(request, { region: config.s3Api.s3Region, lookupSecret });
        authenticated();
        signingKey = auth.signingKey;
        accessKey =
          looked.record?.id === auth.accessKeyId ? looked.record : await store.getKey(auth.accessKeyId);
        if (!accessKey)
          throw new S3Error(
            'InvalidAccessKeyId',
            403,
            'The AWS Access Key Id you provided does not exist in our records.',
          );
      }
      if (routeError !== undefined || operation === 'Unknown')
        throw accessKey ? routeError : S3Errors.accessDenied();
      const ctx: S3Context = {
        req,
        res,
        store,
        config,
        requestId,
        method,
        bucketName: located.bucket,
        key: located.key,
        query,
        secure,
        fromLoopback,
        accessKey,
        sseS3: this.deps.sseS3,
        body: makeBody(req, auth),
      };
      if (isAccountOperation(operation)) {
        // Listing buckets and creating one are an access key's, never anyone's.
        if (!accessKey) throw S3Errors.accessDenied();
        // Buckets have ACLs disabled (bucket-settings): a bucket created to be shared is refused.
        if (operation === 'CreateBucket')
          await refuseAclGrants(req.headers, async () => new Set([accessKey.id]), true);
        await ACCOUNT_HANDLERS[operation]({ ...ctx, accessKey });
        return;
      }
      if (!accessKey && ANONYMOUS_REFUSED.has(operation)) {
        throw S3Errors.accessDenied(
          'Anonymous users cannot initiate multipart uploads.  Please authenticate.',
        );
      }
      const named = located.bucket!;
      const requestFacts = facts(
        auth === ANONYMOUS ? undefined : auth.presigned ? 'REST-QUERY-STRING' : 'REST-HEADER',
      );
      const need = AUTHORIZATION[operation].bucket;
      const action = versionedAction(policyActionOf(operation, query), query.get('versionId'));
      const bucket = await bucketLookup;
      // A batch delete is allowed or refused key by key (delete.ts): it needs only a way in here.
      const entry =
        operation === 'DeleteObjects' && bucket && typeof storedPolicy(bucket) === 'object'
          ? { bucket, permission: (accessKey && bucket.permissions[accessKey.id]) ?? NO_PERMISSION }
          : await allowedBucket(bucket, named, accessKey, need, {
              facts: requestFacts,
              access: { action, key: located.key },
              operation,
            });
      authenticated();
      const bucketCtx: BucketContext = {
        ...ctx,
        bucketName: named,
        ...entry,
        may: (access, right) => mayAccess(requestFacts, entry.bucket, accessKey, right, access, operation),
      };
      // Once the request is allowed: CORS headers, and a write asking to share what it creates is refused
      // (asked no sooner, since the answer tells who owns the bucket).
      const carriesAcl = ACL_CARRYING_WRITES.has(operation);
      const allowedRequest = async () => {
        addCorsHeaders(req, res, bucketCtx.bucket);
        if (carriesAcl) await refuseAclGrants(req.headers, async () => bucketOwners(bucketCtx.bucket));
      };
      if (isCopyOperation(operation)) {
        // A copy reads its source: the request must be allowed to read it there too.
        const source = copySourceOf(req.headers, store.streams !== undefined);
        const sourceBucket = await allowedBucket(
          source.bucketName === named ? bucketCtx.bucket : await store.bucketByName(source.bucketName),
          source.bucketName,
          accessKey,
          'read',
          {
            facts: requestFacts,
            access: {
              action: versionedAction('s3:GetObject', (source as { versionId?: string }).versionId),
              key: source.key,
            },
            operation,
          },
        );
        await allowedRequest();
        await COPY_HANDLERS[operation]({
          ...bucketCtx,
          source: { bucket: sourceBucket.bucket, key: source.key, versionId: source.versionId },
        });
        return;
      }
      await allowedRequest();
      await BUCKET_HANDLERS[operation](bucketCtx);
    } catch (err) {
      const e = err instanceof S3Error ? err : undefined;
      if (!e)
        log.error({ err: String((err as Error)?.message ?? err), operation, requestId }, 'request failed');
      const answer = e ?? S3Errors.internal();
      refusal = { code: answer.code, message: answer.message };
      refuse(req, res, answer, rawPath, requestId);
    } finally {
      authenticated();
      signingKey?.fill(0);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.deps.metrics?.observe(operation, res.statusCode, seconds, {
        in: declaredLength,
        out: socket.bytesWritten - writtenBefore,
      });
    }
  }

  /** Resolves with the address bound (`host:port`; port 0 in the configuration lets the system pick). */
  listen(host: string, port: number): Promise<string> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}
