// Interop: TLS on a real coffre server — the S3 and admin APIs over https with a generated certificate (SDK and
// a raw client trusting only that certificate), the certificate swapped on SIGHUP without a restart, and the
// rule that SSE-C over plain HTTP is refused from a non-loopback peer unless allow_ssec_over_http is set.
// The non-loopback peer is a network namespace joined to this one by a veth pair (needs root and iproute2);
// where that cannot be set up the test is skipped, and the transport rule is checked as a unit below.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { certificateFingerprint, generateSelfSignedCertificate } from '../../src/api/tls.js';
import { requireSecureTransport, type EncryptionParams } from '../../src/sse/params.js';
import { S3Error } from '../../src/util/s3-error.js';
import { signer } from '../api/s3/sigv4-client.js';
import { makeNamespace, type Namespace } from '../helpers/netns.js';
import { runCommand, startServer, type TestServer } from '../helpers/server.js';
import { customerKey, httpsClient, sseCHeaders, startTlsServer } from '../security/ssec-helpers.js';

interface Answer {
  status: number;
  body: string;
  fingerprint: string;
}

/** One request on a fresh TLS connection trusting only `ca`; reports the certificate the server presented. */
function httpsGet(
  port: number,
  path: string,
  ca: Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, agent: false, headers }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('S3 and admin APIs over HTTPS: the SDK with the certificate as its only CA, SSE-C round trip', async (t) => {
  const { server, ca } = await startTlsServer();
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  assert.match(server.endpoint, /^https:\/\/127\.0\.0\.1:/);
  assert.match(server.adminEndpoint, /^https:/);
  const s3 = httpsClient(server, ca);
  t.after(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'tls' }));
  const key = customerKey();
  const data = randomBytes(1_500_000);
  const sse = { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.b64 };
  await s3.send(new PutObjectCommand({ Bucket: 'tls', Key: 'obj', Body: data, ...sse }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'tls', Key: 'obj', ...sse }));
  assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(data));

  const fp = certificateFingerprint(ca);
  const health = await httpsGet(server.adminPort, '/health', ca);
  assert.equal(health.status, 200);
  assert.equal(health.fingerprint, fp);
  const keys = await httpsGet(server.adminPort, '/v1/keys', ca, {
    authorization: `Bearer ${server.adminToken}`,
  });
  assert.equal(keys.status, 200);
  assert.match(keys.body, new RegExp(server.accessKeyId));
  assert.equal((await httpsGet(server.s3Port, '/', ca)).fingerprint, fp);

  // A client that does not trust the certificate is refused; plain HTTP gets no answer from the TLS ports.
  const other = await generateSelfSignedCertificate(join(server.dir, 'other-tls'));
  await assert.rejects(httpsGet(server.s3Port, '/', readFileSync(other.certPath)), /self[- ]signed|verify/i);
  await assert.rejects(
    httpsGet(server.adminPort, '/health', readFileSync(other.certPath)),
    /self[- ]signed|verify/i,
  );
  for (const port of [server.s3Port, server.adminPort]) {
    const plain = await fetch(`http://127.0.0.1:${port}/`).then(
      (r) => r.status,
      () => 'refused',
    );
    assert.ok(plain === 'refused' || plain === 400, `plain HTTP on a TLS port: ${plain}`);
  }
});

test('a replaced certificate is served after SIGHUP, by the same process, to S3 and admin clients', async (t) => {
  const { server, files, ca } = await startTlsServer();
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  const s3 = httpsClient(server, ca);
  await s3.send(new CreateBucketCommand({ Bucket: 'reload' }));
  await s3.send(new PutObjectCommand({ Bucket: 'reload', Key: 'k', Body: 'before' }));
  s3.destroy();
  const first = certificateFingerprint(ca);
  assert.equal((await httpsGet(server.s3Port, '/', ca)).fingerprint, first);

  await generateSelfSignedCertificate(join(server.dir, 'tls')); // replaces cert.pem and key.pem in place
  const ca2 = readFileSync(files.certPath);
  const second = certificateFingerprint(ca2);
  assert.notEqual(second, first);
  const pid = server.process.pid!;
  process.kill(pid, 'SIGHUP');
  let seen = '';
  for (let i = 0; i < 100 && seen !== second; i++) {
    seen = await httpsGet(server.s3Port, '/', ca2).then(
      (a) => a.fingerprint,
      () => '',
    );
    if (seen !== second) await sleep(100);
  }
  assert.equal(seen, second, 'a new handshake sees the new certificate');
  assert.equal((await httpsGet(server.adminPort, '/health', ca2)).fingerprint, second);
  assert.equal(server.process.exitCode, null);
  assert.equal(server.process.pid, pid);
  assert.match(server.stdout() + server.stderr(), /TLS certificate reloaded/);
  // The old certificate is no longer trusted by new connections; data is still there.
  await assert.rejects(httpsGet(server.s3Port, '/', ca));
  const s3b = httpsClient(server, ca2);
  t.after(() => s3b.destroy());
  const got = await s3b.send(new GetObjectCommand({ Bucket: 'reload', Key: 'k' }));
  assert.equal(await got.Body!.transformToString(), 'before');
});

test('the transport rule: SSE-C needs TLS, a loopback peer or allow_ssec_over_http', () => {
  const sseC: EncryptionParams = { kind: 'sse-c', key: Buffer.alloc(32, 7), keyMd5: 'x' };
  const plaintext: EncryptionParams = { kind: 'plaintext' };
  const refused = (p: EncryptionParams, encrypted: boolean, loopback: boolean, allowInsecure: boolean) => {
    try {
      requireSecureTransport(p, { encrypted, loopback, allowInsecure });
      return undefined;
    } catch (err) {
      assert.ok(err instanceof S3Error);
      return `${err.status} ${err.code} ${err.message}`;
    }
  };
  assert.match(refused(sseC, false, false, false) ?? '', /^400 InvalidRequest .*secure connection/);
  assert.equal(refused(sseC, true, false, false), undefined);
  assert.equal(refused(sseC, false, true, false), undefined);
  assert.equal(refused(sseC, false, false, true), undefined);
  assert.equal(refused(plaintext, false, false, false), undefined);
});

// ---- a peer that is not on loopback: a network namespace behind a veth pair ----

/** Restarts the server with its S3 API bound to `addr`, and extra [s3_api] lines. */
async function restartOn(server: TestServer, addr: string, extra: string): Promise<TestServer> {
  await server.stop();
  const config = readFileSync(server.configPath, 'utf8')
    .split('\n')
    .filter((l) => !/^(allow_ssec_over_http|tls_cert|tls_key) =/.test(l))
    .join('\n')
    .replace(/^api_bind_addr = "[^"]*:(\d+)"$/m, (line, port: string) =>
      port === String(server.s3Port) ? `api_bind_addr = "${addr}:${port}"\n${extra}` : line,
    );
  assert.ok(config.includes(`"${addr}:${server.s3Port}"`), 'S3 bind address rewritten');
  writeFileSync(server.configPath, config, { mode: 0o600 });
  return startServer({ dir: server.dir });
}

interface CurlAnswer {
  status: number;
  body: string;
}

/** curl run inside the namespace: a presigned request (signed here, headers included) to the host side. */
async function curlFromPeer(
  ns: Namespace,
  server: TestServer,
  opts: {
    scheme: 'http' | 'https';
    method: string;
    path: string;
    headers?: Record<string, string>;
    body?: string;
    ca?: string;
  },
): Promise<CurlAnswer> {
  const host = `${ns.hostAddr}:${server.s3Port}`;
  const headers = opts.headers ?? {};
  const signed = await signer({ accessKey: server.accessKeyId, secret: server.secretAccessKey }).presign(
    {
      method: opts.method,
      protocol: `${opts.scheme}:`,
      hostname: ns.hostAddr,
      port: server.s3Port,
      path: opts.path,
      query: {},
      headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
    },
    { expiresIn: 600, unhoistableHeaders: new Set(Object.keys(headers)) },
  );
  const url = `${opts.scheme}://${host}${opts.path}?${new URLSearchParams(signed.query as Record<string, string>).toString()}`;
  const args = [
    'netns',
    'exec',
    ns.name,
    'curl',
    '-sS',
    '-m',
    '20',
    '-X',
    opts.method,
    '-w',
    '\n%{http_code}',
  ];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (opts.body !== undefined) args.push('--data-binary', opts.body, '-H', 'content-type:');
  if (opts.ca) args.push('--cacert', opts.ca);
  args.push(url);
  const r = await runCommand('ip', args);
  assert.equal(r.code, 0, `curl from the namespace: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

test('SSE-C over plain HTTP from a non-loopback peer is refused, unless allow_ssec_over_http; over TLS it works', async (t) => {
  if (process.getuid?.() !== 0)
    return t.skip('needs root for a network namespace (the rule is unit-tested above)');
  const ns = makeNamespace(t);
  if (!ns) return t.skip('network namespaces are not available here (the rule is unit-tested above)');
  let server = await startServer();
  t.after(async () => {
    await server.stop();
    server.cleanup();
  });
  await server.client().send(new CreateBucketCommand({ Bucket: 'peer' }));
  const key = customerKey();
  const sse = sseCHeaders(key);

  // Plain HTTP from 10.213.x.2: a plaintext PUT is fine (so the peer reaches the server), SSE-C is refused.
  server = await restartOn(server, ns.hostAddr, '');
  const plain = await curlFromPeer(ns, server, {
    scheme: 'http',
    method: 'PUT',
    path: '/peer/plain',
    body: 'hi',
  });
  assert.equal(plain.status, 200, plain.body);
  for (const [method, path, body] of [
    ['PUT', '/peer/secret', 'sensitive'],
    ['GET', '/peer/plain', undefined],
  ] as const) {
    const refused = await curlFromPeer(ns, server, { scheme: 'http', method, path, headers: sse, body });
    assert.equal(refused.status, 400, `${method}: ${refused.body}`);
    assert.match(refused.body, /<Code>InvalidRequest<\/Code>/);
    assert.match(refused.body, /must be made over a secure connection/);
    assert.ok(!refused.body.includes(key.b64));
  }
  // Nothing was stored by the refused PUT.
  const missing = await curlFromPeer(ns, server, { scheme: 'http', method: 'GET', path: '/peer/secret' });
  assert.equal(missing.status, 404);

  // The operator's explicit option (a trusted TLS-terminating proxy in front) lets it through.
  server = await restartOn(server, ns.hostAddr, 'allow_ssec_over_http = true');
  const allowed = await curlFromPeer(ns, server, {
    scheme: 'http',
    method: 'PUT',
    path: '/peer/secret',
    headers: sse,
    body: 'sensitive',
  });
  assert.equal(allowed.status, 200, allowed.body);
  const read = await curlFromPeer(ns, server, {
    scheme: 'http',
    method: 'GET',
    path: '/peer/secret',
    headers: sse,
  });
  assert.equal(read.status, 200);
  assert.equal(read.body, 'sensitive');

  // Over TLS, without the option, from the same peer: accepted.
  const files = await generateSelfSignedCertificate(join(server.dir, 'peer-tls'), [ns.hostAddr]);
  server = await restartOn(
    server,
    ns.hostAddr,
    `tls_cert = "${files.certPath}"\ntls_key = "${files.keyPath}"`,
  );
  const overTls = await curlFromPeer(ns, server, {
    scheme: 'https',
    method: 'GET',
    path: '/peer/secret',
    headers: sse,
    ca: files.certPath,
  });
  assert.equal(overTls.status, 200, overTls.body);
  assert.equal(overTls.body, 'sensitive');
  const wrongKey = await curlFromPeer(ns, server, {
    scheme: 'https',
    method: 'GET',
    path: '/peer/secret',
    headers: { ...sseCHeaders(customerKey()) },
    ca: files.certPath,
  });
  assert.equal(wrongKey.status, 403);
});
