// TLS for the S3 and admin APIs: loading a PEM certificate and key for node:https, swapping them on a running
// server without dropping it (SIGHUP, or the files changing, as when certbot renews), and generating a
// self-signed certificate for local use with the `openssl` command.
//
// A reload that fails (unreadable file, certificate and key that do not match, a renewal caught half-written)
// keeps the previous certificate in service and reports the error; the next change or SIGHUP tries again.

import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { watchFile, unwatchFile } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import { promisify } from 'node:util';
import { UserError, errorMessage } from '../util/errors.js';

const run = promisify(execFile);

/** Paths of a PEM certificate chain and its private key (`[s3_api] tls_cert` / `tls_key`). */
export interface TlsFiles {
  certPath: string;
  keyPath: string;
}

/** Oldest protocol version offered: TLS 1.0 and 1.1 are broken and no S3 client needs them. */
export const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * Reads the certificate and key and checks that they form a usable pair. Returns options for
 * `https.createServer` / `server.setSecureContext`. A missing or mismatched file is a UserError naming it.
 */
export async function loadTlsOptions(files: TlsFiles): Promise<SecureContextOptions> {
  const read = async (what: string, path: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new UserError(`cannot read TLS ${what} ${path}: ${errorMessage(err)}`);
    }
  };
  const cert = await read('certificate', files.certPath);
  const key = await read('key', files.keyPath);
  const options: SecureContextOptions = { cert, key, minVersion: MIN_TLS_VERSION };
  try {
    createSecureContext(options); // throws on a malformed PEM or a key that does not match the certificate
  } catch (err) {
    throw new UserError(
      `TLS certificate ${files.certPath} and key ${files.keyPath} are not usable: ${errorMessage(err)}`,
    );
  }
  return options;
}

/** SHA-256 fingerprint of the first certificate in a PEM chain (colon-separated hex, as openssl prints it). */
export function certificateFingerprint(certPem: string | Buffer): string {
  return new X509Certificate(certPem).fingerprint256;
}

export interface TlsReloaderOptions {
  /** Poll the two files for changes every this many milliseconds (fs.watchFile); 0 disables. Default 5000. */
  pollIntervalMs?: number;
  /** Reload on SIGHUP. Default true. */
  onSighup?: boolean;
  /** Called after each successful reload with the new certificate's fingerprint. */
  onReload?: (fingerprint: string) => void;
  /** Called when a reload fails; the previous certificate stays in service. */
  onError?: (err: Error) => void;
}

/**
 * Swaps a running TLS/HTTPS server's certificate when asked (reload), on SIGHUP, or when the files change.
 * Established connections keep their session; new handshakes get the new certificate.
 */
export class TlsReloader {
  private readonly pollIntervalMs: number;
  private readonly sighup: boolean;
  private started = false;
  private pending: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private readonly onSignal = () => this.schedule(0);
  private readonly onFileChange = () => this.schedule(FILE_SETTLE_MS);

  constructor(
    private readonly server: TlsServer,
    private readonly files: TlsFiles,
    private readonly opts: TlsReloaderOptions = {},
  ) {
    this.pollIntervalMs = opts.pollIntervalMs ?? 5000;
    this.sighup = opts.onSighup ?? true;
  }

  /** Starts listening for SIGHUP and file changes. */
  start(): this {
    if (this.started) return this;
    this.started = true;
    if (this.sighup) process.on('SIGHUP', this.onSignal);
    if (this.pollIntervalMs > 0) {
      // Polling rather than fs.watch: renewals usually replace the file (rename or symlink swap), which an
      // inotify watch on the old inode would miss.
      for (const path of [this.files.certPath, this.files.keyPath]) {
        watchFile(path, { interval: this.pollIntervalMs, persistent: false }, this.onFileChange);
      }
    }
    return this;
  }

  /** Stops listening; the server keeps its current certificate. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    if (this.sighup) process.off('SIGHUP', this.onSignal);
    for (const path of [this.files.certPath, this.files.keyPath]) unwatchFile(path, this.onFileChange);
    clearTimeout(this.pending);
    this.pending = undefined;
  }

  /** Loads the files now and installs them; rejects (leaving the old certificate in place) if they are unusable. */
  reload(): Promise<void> {
    // Serialised, so a slow read cannot install an older pair after a newer one.
    const next = this.running.then(async () => {
      const options = await loadTlsOptions(this.files);
      this.server.setSecureContext(options);
      this.opts.onReload?.(certificateFingerprint(options.cert as Buffer));
    });
    this.running = next.catch(() => undefined);
    return next;
  }

  private schedule(delayMs: number): void {
    // Coalesce bursts (cert then key written separately) into one reload.
    clearTimeout(this.pending);
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.reload().catch((err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        if (this.opts.onError) this.opts.onError(error);
      });
    }, delayMs);
    this.pending.unref();
  }
}

/** Wait after a file change before reloading, so that a certificate and key written one after the other are
 * read as a pair. */
const FILE_SETTLE_MS = 200;

/** Names always present in a generated certificate: it is meant for clients on this machine. */
export const LOCAL_NAMES = ['localhost', '127.0.0.1', '::1'] as const;
/** Validity of generated certificates; 825 days is the longest some TLS clients accept. */
export const SELF_SIGNED_DAYS = 825;

const DNS_NAME = /^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?$/;

function subjectAltNames(hostnames: readonly string[]): string {
  const names = [...new Set([...LOCAL_NAMES, ...hostnames])];
  return names
    .map((name) => {
      if (isIP(name)) return `IP:${name}`;
      if (!DNS_NAME.test(name)) throw new UserError(`not a valid host name for a certificate: ${name}`);
      return `DNS:${name}`;
    })
    .join(',');
}

/**
 * Writes a new self-signed certificate (EC P-256, SHA-256) and its key to `dir/cert.pem` and `dir/key.pem`
 * (key mode 0600), valid for localhost, 127.0.0.1, ::1 and the given host names / IP addresses. Both files
 * are replaced atomically (written aside, then renamed). Requires the `openssl` command.
 */
export async function generateSelfSignedCertificate(
  dir: string,
  hostnames: readonly string[] = [],
): Promise<TlsFiles> {
  const san = subjectAltNames(hostnames);
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(dir, '.tls-'));
  try {
    // The served certificate is a leaf (CA:FALSE, serverAuth), signed by a one-off CA whose key never
    // leaves this temporary directory and is deleted with it: clients trust that CA (cert.pem holds the leaf
    // and the CA, so `--ca-bundle cert.pem` works), and since its key is gone nobody — not even whoever later
    // reads key.pem — can mint another certificate they would accept. A self-signed leaf cannot be used
    // instead: OpenSSL accepts a self-signed trust anchor only if it may sign certificates (keyCertSign).
    // Our own configuration, so the result does not depend on the system's openssl.cnf.
    const config = [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = coffre self-signed',
      '[ca]',
      'basicConstraints = critical,CA:TRUE,pathlen:0',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[leaf]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      `subjectAltName = ${san}`,
      '',
    ].join('\n');
    const cnf = join(work, 'openssl.cnf');
    await writeFile(cnf, config, { mode: 0o600 });
    const keyTmp = join(work, 'key.pem');
    const certTmp = join(work, 'cert.pem');
    const caKey = join(work, 'ca-key.pem');
    const caCert = join(work, 'ca.pem');
    const csr = join(work, 'leaf.csr');
    const leafCert = join(work, 'leaf.pem');
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256'];
    const days = ['-days', String(SELF_SIGNED_DAYS)];
    try {
      const opts = { timeout: 30_000 };
      await run(
        'openssl',
        [
          'req',
          '-x509',
          ...ec,
          ...days,
          '-config',
          cnf,
          '-extensions',
          'ca',
          '-subj',
          '/CN=coffre one-off CA',
          '-keyout',
          caKey,
          '-out',
          caCert,
        ],
        opts,
      );
      await run('openssl', ['req', '-new', ...ec, '-config', cnf, '-keyout', keyTmp, '-out', csr], opts);
      await run(
        'openssl',
        [
          'x509',
          '-req',
          '-in',
          csr,
          '-CA',
          caCert,
          '-CAkey',
          caKey,
          '-CAcreateserial',
          '-sha256',
          ...days,
          '-extfile',
          cnf,
          '-extensions',
          'leaf',
          '-out',
          leafCert,
        ],
        opts,
      );
      await writeFile(certTmp, Buffer.concat([await readFile(leafCert), await readFile(caCert)]), {
        mode: 0o644,
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new UserError(
          'cannot generate a certificate: the openssl command is not installed; install it, or set tls_cert and tls_key',
        );
      }
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new UserError(`openssl failed to generate a certificate: ${stderr || errorMessage(err)}`);
    }
    await chmod(keyTmp, 0o600);
    const files = { certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem') };
    await rename(keyTmp, files.keyPath);
    await rename(certTmp, files.certPath);
    return files;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
