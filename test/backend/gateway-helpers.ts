// Test helper: a coffre node in front of an S3 backend. The backend here is another real coffre node (any S3
// engine will do: see docs/gateway.md); the gateway is started with a [backend] table naming it, and its SSE-S3
// keyring is made at once, sealed to a fresh operator key that unlocks it at every start.
import { rmSync } from 'node:fs';
import { after, before } from 'node:test';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { startServer, type ServerOptions, type TestServer } from '../helpers/server.js';
import { mustCli, operatorKey, type Operator } from '../security/sse-s3-helpers.js';

export interface BackendTarget {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  region?: string;
}

/** The [backend] table of a gateway storing into `target` under `prefix`. */
export function backendTable(target: BackendTarget, prefix = 'coffre/', extra: string[] = []): string {
  return [
    '[backend]',
    'type = "s3"',
    `endpoint = "${target.endpoint}"`,
    `region = "${target.region ?? 'us-east-1'}"`,
    `access_key_id = "${target.accessKeyId}"`,
    `secret_access_key = "${target.secretAccessKey}"`,
    `bucket = "${target.bucket}"`,
    `prefix = "${prefix}"`,
    ...extra,
  ].join('\n');
}

/** A running coffre node used as the backend, with the bucket gateways store into. */
export async function startBackend(
  bucket = 'gateway-store',
): Promise<{ server: TestServer; target: BackendTarget; client: S3Client }> {
  const server = await startServer();
  const client = server.client();
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    server,
    client,
    target: {
      endpoint: server.endpoint,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      bucket,
    },
  };
}

export interface Gateway {
  server: TestServer;
  operator: Operator;
  client: S3Client;
  stop(): Promise<void>;
}

/** A gateway in front of `target`, with its SSE-S3 keyring made and unlocked (unless `keyring` is false). */
export async function startGateway(
  target: BackendTarget,
  opts: { prefix?: string; keyring?: boolean; server?: ServerOptions; table?: string } = {},
): Promise<Gateway> {
  const operator = await operatorKey('gateway-operator');
  const server = await startServer({
    ...opts.server,
    extraConfig: `${opts.server?.extraConfig ?? ''}\n${opts.table ?? backendTable(target, opts.prefix)}\n`,
  });
  if (opts.keyring !== false) await mustCli(server, ['sse-s3', 'init', '--recipient', operator.publicFile]);
  const client = server.client();
  return {
    server,
    operator,
    client,
    async stop() {
      client.destroy();
      await server.stop();
      server.cleanup();
      rmSync(operator.dir, { recursive: true, force: true });
    },
  };
}

export type Backend = Awaited<ReturnType<typeof startBackend>>;

/**
 * A backend and a gateway in front of it for all the tests of a file, with `buckets` created through the
 * gateway: handed to `take` once started, stopped after the file's tests.
 */
export function gatewayForFile(
  take: (started: { backend: Backend; gateway: Gateway; s3: S3Client }) => void,
  opts: { buckets?: string[]; gateway?: Parameters<typeof startGateway>[1] } = {},
): void {
  let backend: Backend | undefined;
  let gateway: Gateway | undefined;
  before(async () => {
    backend = await startBackend();
    gateway = await startGateway(backend.target, opts.gateway);
    for (const Bucket of opts.buckets ?? []) await gateway.client.send(new CreateBucketCommand({ Bucket }));
    take({ backend, gateway, s3: gateway.client });
  });
  after(async () => {
    await gateway?.stop();
    backend?.client.destroy();
    await backend?.server.stop();
    backend?.server.cleanup();
  });
}

/** A GetObject answer's whole body. */
export async function bodyOf(out: { Body?: unknown }): Promise<Buffer> {
  const b = out.Body as { transformToByteArray(): Promise<Uint8Array> };
  return Buffer.from(await b.transformToByteArray());
}

/** What `probe` gives once it gives something (it may throw meanwhile): for state that gateways reach in time. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
