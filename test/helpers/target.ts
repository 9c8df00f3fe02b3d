// Test helper: the coffre S3 endpoint an interop test drives. By default a single node (startServer); a test
// file under test/backend/ calls throughGateway() and then imports an interop test file, whose tests then run
// unchanged against a gateway with a [backend] (here another coffre node: test/backend/gateway-helpers.ts).
// The same client tests thus prove both stores, and a difference the S3 API allows (the gateway's ETags are
// never MD5s: docs/gateway.md) is asked of viaGateway() where a test depends on it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startServer, type ServerOptions, type TestServer } from './server.js';
import { startBackend, startGateway } from '../backend/gateway-helpers.js';

let gateway = false;

/** Makes every startTarget() of this test process a gateway in front of a coffre backend. */
export function throughGateway(): void {
  gateway = true;
}

/** Whether this process's interop tests run through a gateway. */
export function viaGateway(): boolean {
  return gateway;
}

/** A coffre S3 endpoint: a node, or a gateway whose stop and cleanup also end its backend. */
export async function startTarget(opts: ServerOptions = {}): Promise<TestServer> {
  if (!gateway) return startServer(opts);
  const backend = await startBackend();
  let gw;
  try {
    gw = await startGateway(backend.target, { server: opts });
  } catch (err) {
    backend.client.destroy();
    await backend.server.stop();
    backend.server.cleanup();
    throw err;
  }
  const server = gw.server;
  return {
    ...server,
    async stop() {
      await gw.stop();
      backend.client.destroy();
      await backend.server.stop();
    },
    async kill() {
      await server.kill();
    },
    cleanup() {
      backend.server.cleanup();
    },
  };
}

/**
 * Checks the ETag of a single-PUT object holding `data`: its MD5 on a node, and on a gateway the shape of the
 * ETag it derives from its backend's (32 hex digits and "-1", so that clients never take it for an MD5).
 */
export function assertPutEtag(actual: string | undefined, data: Buffer | string): void {
  if (gateway) assert.match(actual ?? '', /^"[0-9a-f]{32}-1"$/, `a gateway's ETag, got ${actual}`);
  else assert.equal(actual, `"${createHash('md5').update(data).digest('hex')}"`);
}
