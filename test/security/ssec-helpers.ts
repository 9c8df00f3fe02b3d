// Shared by the SSE-C and TLS tests: customer keys in every encoding a client sends them, a server with a
// generated certificate, an SDK client that trusts only that certificate, and walking the data directory.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { generateSelfSignedCertificate, type TlsFiles } from '../../src/api/tls.js';
import { signer } from '../api/s3/sigv4-client.js';
import { startServer, type ServerOptions, type TestServer } from '../helpers/server.js';

export const SSE_C = 'x-amz-server-side-encryption-customer-';
export const COPY_SSE_C = 'x-amz-copy-source-server-side-encryption-customer-';

/** A customer key: raw bytes, and the base64 / MD5 forms that travel in headers. */
export interface CustomerKey {
  raw: Buffer;
  b64: string;
  md5: string;
}

export function customerKey(raw: Buffer = randomBytes(32)): CustomerKey {
  return { raw, b64: raw.toString('base64'), md5: createHash('md5').update(raw).digest('base64') };
}

/** The three SSE-C headers for `key`, under the object or copy-source prefix. */
export function sseCHeaders(key: CustomerKey, prefix: string = SSE_C): Record<string, string> {
  return { [`${prefix}algorithm`]: 'AES256', [`${prefix}key`]: key.b64, [`${prefix}key-md5`]: key.md5 };
}

/** The same key as the AWS SDK's SSE-C parameters of a request. */
export function sseCParams(key: CustomerKey): {
  SSECustomerAlgorithm: 'AES256';
  SSECustomerKey: string;
  SSECustomerKeyMD5: string;
} {
  return { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.b64, SSECustomerKeyMD5: key.md5 };
}

/** The aws CLI v2 from the system package when present (the pyenv shim may be v1). */
export const AWS_BIN = existsSync('/usr/bin/aws') ? '/usr/bin/aws' : 'aws';

/** A clean environment for the aws CLI: this server's credentials, no user config, SigV4 everywhere. */
export function awsEnv(server: TestServer, home: string): Record<string, string> {
  return {
    HOME: home,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(home, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-aws-credentials'),
    AWS_PAGER: '',
    // Trust only what a test passes with --ca-bundle, not a machine-wide bundle.
    AWS_CA_BUNDLE: '',
  };
}

export interface TlsTestServer {
  server: TestServer;
  files: TlsFiles;
  ca: Buffer;
}

/** A server whose S3 and admin APIs speak https with a freshly generated self-signed certificate. */
export async function startTlsServer(opts: ServerOptions = {}): Promise<TlsTestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'coffre-tls-test-'));
  const files = await generateSelfSignedCertificate(join(dir, 'tls'));
  const server = await startServer({
    ...opts,
    dir,
    s3Extra: `tls_cert = "${files.certPath}"\ntls_key = "${files.keyPath}"\n${opts.s3Extra ?? ''}`,
  });
  return { server, files, ca: readFileSync(files.certPath) };
}

/** An SDK client for a TLS server that trusts only its certificate. */
export function httpsClient(server: TestServer, ca: Buffer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca, keepAlive: true }) }),
  });
}

/** Every regular file under `dir`, recursively. */
export function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) out.push(...walkFiles(path));
    else if (st.isFile()) out.push(path);
  }
  return out;
}

/** Block files of the block store: `<data>/ab/cd/<64 hex>` named by the SHA-256 of their content. */
export function blockFiles(dataDir: string): string[] {
  return walkFiles(dataDir).filter((p) => /[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(p));
}

/** What a GET gave: its status and the body bytes that arrived before the end or a cut connection. */
export interface FetchOutcome {
  status: number;
  body: Buffer;
  error?: Error;
}

/** A request signed with the server's access key (SigV4, header auth) and sent with fetch, over plain HTTP. */
export async function signedFetch(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<FetchOutcome> {
  const host = `127.0.0.1:${server.s3Port}`;
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).sign({
    method,
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: server.s3Port,
    path,
    query: {},
    headers: { host, 'x-amz-content-sha256': createHash('sha256').digest('hex'), ...headers },
  });
  const send: Record<string, string> = { ...signed.headers };
  delete send.host;
  const res = await fetch(`http://${host}${path}`, { method, headers: send });
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res.body ?? []) chunks.push(Buffer.from(chunk as Uint8Array));
    return { status: res.status, body: Buffer.concat(chunks) };
  } catch (err) {
    return { status: res.status, body: Buffer.concat(chunks), error: err as Error };
  }
}
