// backend/client: the S3 client of the service a gateway node stores its objects in, built from [backend] in
// coffre.toml, the check made at start that the service answers and accepts the credentials, and how the
// service's failures reach coffre's clients (unreachable or overloaded: 503 with Retry-After, to retry).
import { readFileSync, existsSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { ListObjectsV2Command, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { BackendConfig } from '../config/config.js';
import { checkPrivate } from '../rpc/identity.js';
import { UserError, errorMessage } from '../util/errors.js';
import { S3Error } from '../util/s3-error.js';
import { BackendRequestError, ObjectRequests } from './object-requests.js';

/** How long a connection to the backend may take to open, and stay silent mid-request. */
const CONNECT_TIMEOUT_MS = 5_000;
const SOCKET_TIMEOUT_MS = 60_000;
/** Sockets kept open to the backend: enough for many requests in flight through one gateway. */
const MAX_SOCKETS = 256;

/** The secret access key, from coffre.toml or from its own file (refused if others can read it). */
export function backendSecret(config: BackendConfig, allowInsecurePermissions: boolean): string {
  if (config.secretAccessKey !== undefined) return config.secretAccessKey;
  const file = config.secretAccessKeyFile!;
  if (!existsSync(file))
    throw new UserError(`[backend] secret_access_key_file ${file} does not exist; write the secret into it`);
  checkPrivate(file, '[backend] secret_access_key_file', { allowInsecurePermissions });
  const secret = readFileSync(file, 'utf8').trim();
  if (!secret) throw new UserError(`[backend] secret_access_key_file ${file} is empty`);
  return secret;
}

function readCaBundle(path: string): string[] {
  try {
    return [...rootCertificates, readFileSync(path, 'utf8')];
  } catch (err) {
    throw new UserError(`[backend] ca_bundle ${path} cannot be read: ${errorMessage(err)}`);
  }
}

/** The backend's two clients: the AWS SDK for everything, and the hot object requests sent directly. */
export interface BackendClients {
  client: S3Client;
  objects: ObjectRequests;
}

export function createBackendClients(config: BackendConfig, secretAccessKey: string): BackendClients {
  const ca = config.caBundle ? readCaBundle(config.caBundle) : undefined;
  const connection = {
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    socketTimeoutMs: SOCKET_TIMEOUT_MS,
    httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...(ca ? { ca } : {}) }),
  };
  // The SDK's notice that later SDK releases will need a newer Node.js speaks to coffre's developers (who
  // choose the SDK version coffre ships with), not to the operator, whose start output it would clutter.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.pathStyle,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey },
    // What goes to the backend is sealed chunk by chunk (AES-GCM tags): a checksum per request would cost a
    // pass over the data for nothing, and engines disagree on the trailers that carry it.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A failure is answered at once as 503 with Retry-After; the client retries, not the gateway.
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      httpAgent: connection.httpAgent,
      httpsAgent: connection.httpsAgent,
    },
  });
  return { client, objects: new ObjectRequests(config, secretAccessKey, connection) };
}

/** The HTTP status of a backend's answer, if it answered at all. */
export function backendStatus(err: unknown): number | undefined {
  if (err instanceof BackendRequestError) return err.status;
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  return undefined;
}

export function backendErrorCode(err: unknown): string | undefined {
  if (err instanceof BackendRequestError) return err.code;
  return err instanceof S3ServiceException ? err.name : undefined;
}

/** The answer to a client when the backend failed in a way a retry may mend. */
export function backendUnavailable(err: unknown): S3Error {
  const status = backendStatus(err);
  const why = status === undefined ? `unreachable (${describe(err)})` : `answered ${status}`;
  return new S3Error('ServiceUnavailable', 503, `The storage backend is ${why}; please retry.`);
}

function describe(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? (err as Error).name ?? errorMessage(err);
}

/**
 * A backend error as coffre's clients should see it: a refusal that is the backend's own (5xx, throttling,
 * no answer) becomes 503; anything else is a fault of this gateway's configuration or of coffre (500), never
 * passed on as is, since the client did not send the backend's request.
 */
export function fromBackend(err: unknown): S3Error {
  if (err instanceof S3Error) return err;
  const status = backendStatus(err);
  if (status === undefined || status >= 500 || status === 429 || backendErrorCode(err) === 'SlowDown')
    return backendUnavailable(err);
  if (status === 403)
    return new S3Error(
      'ServiceUnavailable',
      503,
      'The storage backend refused this gateway (403): its [backend] credentials may have been revoked; please retry later.',
    );
  return new S3Error('InternalError', 500, `The storage backend refused a request (${status}).`);
}

/**
 * Checks, before the node listens, that the backend answers and accepts the credentials for the bucket: a
 * gateway that cannot store anything should not start. One line says what is wrong and what to change.
 */
export async function probeBackend(client: S3Client, config: BackendConfig): Promise<void> {
  const where = `${config.endpoint} bucket ${config.bucket}`;
  try {
    await client.send(
      new ListObjectsV2Command({ Bucket: config.bucket, Prefix: config.prefix || undefined, MaxKeys: 1 }),
      { abortSignal: AbortSignal.timeout(CONNECT_TIMEOUT_MS * 3) },
    );
  } catch (err) {
    const code = backendErrorCode(err);
    const status = backendStatus(err);
    if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'InvalidToken')
      throw new UserError(
        `backend ${where} refused the credentials (${code}): check [backend] access_key_id and the secret`,
      );
    if (code === 'NoSuchBucket')
      throw new UserError(
        `backend ${where}: the bucket does not exist; create it, or change [backend] bucket`,
      );
    if (status === 403)
      throw new UserError(
        `backend ${where} denied access (${code ?? 403}): give [backend] access_key_id read and write on the bucket`,
      );
    if (status === 301 || code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed')
      throw new UserError(`backend ${where} is in another region (${code ?? status}): set [backend] region`);
    if (status !== undefined)
      throw new UserError(
        `backend ${where} answered ${status} ${code ?? ''} to a listing; is it an S3 service?`,
      );
    throw new UserError(
      `backend ${config.endpoint} is unreachable (${describe(err)}): check [backend] endpoint and that the service runs`,
    );
  }
}

/** The backend's client, once the backend has answered and accepted the credentials (else a UserError). */
export async function connectBackend(
  config: BackendConfig,
  allowInsecurePermissions: boolean,
): Promise<BackendClients> {
  const clients = createBackendClients(config, backendSecret(config, allowInsecurePermissions));
  try {
    await probeBackend(clients.client, config);
  } catch (err) {
    clients.client.destroy();
    throw err;
  }
  return clients;
}

/**
 * A backend ETag as a write's If-Match names it: without its quotes. Ceph RGW 16.2 compares a PUT's If-Match
 * with the stored ETag byte for byte and refuses the quoted form it gave itself (409 or 412); AWS, MinIO and
 * coffre compare either form.
 */
export function writeIfMatch(etag: string): string {
  return etag.replace(/"/g, '');
}
