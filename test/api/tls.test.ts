// TLS helpers against a real https server on 127.0.0.1 and a client that trusts only the generated certificate:
// generation (SANs, key mode), reload by call, by SIGHUP and by file change without dropping the server, and a
// bad pair that leaves the old certificate in service.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { createServer, request } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { UserError } from '../../src/util/errors.js';
import {
  TlsReloader,
  certificateFingerprint,
  generateSelfSignedCertificate,
  loadTlsOptions,
} from '../../src/api/tls.js';
import type { TlsFiles } from '../../src/api/tls.js';

interface Fetched {
  body: string;
  fingerprint: string;
}

/** One GET on a fresh connection, trusting only `ca`. */
function fetchOnce(server: Server, ca: Buffer, host = '127.0.0.1'): Promise<Fetched> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', ca, agent: false }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ body: Buffer.concat(chunks).toString(), fingerprint }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function withServer(files: TlsFiles, f: (server: Server) => Promise<void>): Promise<void> {
  const server = createServer(await loadTlsOptions(files), (_req, res) => res.end('hello'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await f(server);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

function runOpenssl(args: string[], input: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', args, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin!.end(input);
  });
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'coffre-tls-'));
}

test('generated certificate: SANs for local names, key mode 0600, served to a client that trusts it', async () => {
  const dir = await tempDir();
  try {
    const files = await generateSelfSignedCertificate(dir, ['s3.example.test', '192.0.2.7']);
    assert.equal((await stat(files.keyPath)).mode & 0o777, 0o600);
    const cert = await readFile(files.certPath);
    const san = new X509Certificate(cert).subjectAltName ?? '';
    for (const name of [
      'DNS:localhost',
      'IP Address:127.0.0.1',
      'IP Address:0:0:0:0:0:0:0:1',
      'DNS:s3.example.test',
    ]) {
      assert.ok(san.includes(name), `SAN ${name} in ${san}`);
    }
    assert.ok(san.includes('192.0.2.7'));
    // The served certificate is a leaf: whoever reads its key cannot sign other certificates with it. Its
    // issuer, a one-off CA, comes along in cert.pem for clients to trust; that CA's key was never kept.
    const leaf = new X509Certificate(cert);
    assert.equal(leaf.ca, false, 'the served certificate must not be a CA');
    const text = await runOpenssl(
      ['x509', '-noout', '-ext', 'basicConstraints,keyUsage,extendedKeyUsage'],
      cert,
    );
    assert.match(text, /CA:FALSE/);
    assert.doesNotMatch(text, /Certificate Sign/);
    assert.match(text, /TLS Web Server Authentication/);
    const pems = cert.toString().match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    assert.equal(pems.length, 2);
    const issuer = new X509Certificate(pems[1]!);
    assert.ok(issuer.ca && leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey));
    assert.deepEqual((await readdir(dir)).sort(), ['cert.pem', 'key.pem']);
    await withServer(files, async (server) => {
      const got = await fetchOnce(server, cert);
      assert.equal(got.body, 'hello');
      assert.equal(got.fingerprint, certificateFingerprint(cert));
      const other = await generateSelfSignedCertificate(join(dir, 'other'));
      await assert.rejects(
        fetchOnce(server, await readFile(other.certPath)),
        /self[- ]signed|unable to verify/i,
      );
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('reload, SIGHUP and file changes swap the certificate without dropping the server', async () => {
  const dir = await tempDir();
  try {
    const files = await generateSelfSignedCertificate(dir);
    const first = await readFile(files.certPath);
    await withServer(files, async (server) => {
      const reloaded: string[] = [];
      const errors: Error[] = [];
      const reloader = new TlsReloader(server, files, {
        pollIntervalMs: 50,
        onReload: (fp) => reloaded.push(fp),
        onError: (err) => errors.push(err),
      }).start();
      try {
        assert.equal((await fetchOnce(server, first)).fingerprint, certificateFingerprint(first));

        // Explicit reload after regenerating.
        await generateSelfSignedCertificate(dir);
        const second = await readFile(files.certPath);
        assert.notEqual(certificateFingerprint(second), certificateFingerprint(first));
        await reloader.reload();
        assert.equal((await fetchOnce(server, second)).fingerprint, certificateFingerprint(second));
        await assert.rejects(fetchOnce(server, first));

        // File change picked up by polling (no call, no signal).
        await generateSelfSignedCertificate(dir);
        const third = await readFile(files.certPath);
        await waitFor(() => reloaded.includes(certificateFingerprint(third)));
        assert.equal((await fetchOnce(server, third)).fingerprint, certificateFingerprint(third));

        // SIGHUP, with polling out of the picture.
        reloader.stop();
        const hup = new TlsReloader(server, files, {
          pollIntervalMs: 0,
          onReload: (fp) => reloaded.push(fp),
        }).start();
        try {
          await generateSelfSignedCertificate(dir);
          const fourth = await readFile(files.certPath);
          process.kill(process.pid, 'SIGHUP');
          await waitFor(() => reloaded.includes(certificateFingerprint(fourth)));
          assert.equal((await fetchOnce(server, fourth)).fingerprint, certificateFingerprint(fourth));
        } finally {
          hup.stop();
        }
        assert.deepEqual(errors, []);
      } finally {
        reloader.stop();
      }
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a mismatched certificate and key is refused and the old certificate stays in service', async () => {
  const dir = await tempDir();
  try {
    const files = await generateSelfSignedCertificate(dir);
    const good = await readFile(files.certPath);
    const other = await generateSelfSignedCertificate(join(dir, 'other'));
    await withServer(files, async (server) => {
      await copyFile(other.certPath, files.certPath); // new cert, old key
      const reloader = new TlsReloader(server, files, { pollIntervalMs: 0, onSighup: false });
      await assert.rejects(
        reloader.reload(),
        (err: unknown) => err instanceof UserError && /not usable/.test(err.message),
      );
      assert.equal((await fetchOnce(server, good)).fingerprint, certificateFingerprint(good));
    });
    await assert.rejects(
      loadTlsOptions({ certPath: join(dir, 'missing.pem'), keyPath: files.keyPath }),
      (err: unknown) => err instanceof UserError && err.message.includes('missing.pem'),
    );
    await assert.rejects(generateSelfSignedCertificate(dir, ['bad name;rm']), UserError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
