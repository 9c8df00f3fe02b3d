// api/admin/console: the web console's pages (hand-written HTML, CSS and JavaScript in ./console/, no
// third-party asset, so it works on a machine without internet), the headers every admin answer carries, and
// the rules a browser's request must meet: TLS, or plain HTTP from this machine only; and, for a call that
// changes something, the same origin as the console.
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type { ClientTransport } from '../../util/client-transport.js';

// No inline script or style is allowed anywhere, nothing is loaded from elsewhere, and no other site may
// frame the console (clickjacking) or be the target of its forms.
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Headers on every admin answer, pages and API alike. */
export function setSecurityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-store');
}

// The console's files by the path they are served at; nothing else is ever read from disk.
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
  '/console/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

export function isConsolePage(pathname: string): boolean {
  return Object.hasOwn(ASSETS, pathname) || pathname === '/index.html';
}

// Where the files are: beside this module when a build copied them there, else in the source tree the
// compiled module came from (dist/src/api/admin/ → src/api/admin/console/), which is how `npm start` and
// the tests run.
function consoleDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    join(here, 'console'),
    resolve(here, '..', '..', '..', '..', 'src', 'api', 'admin', 'console'),
  ];
  return candidates.find((d) => existsSync(join(d, 'index.html')));
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

export class ConsoleAssets {
  private readonly assets = new Map<string, Asset>();

  constructor(dir = consoleDir()) {
    if (!dir) return;
    for (const [path, { file, type }] of Object.entries(ASSETS)) {
      const body = readFileSync(join(dir, file));
      const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;
      this.assets.set(path, { body, type, etag });
    }
  }

  serve(req: IncomingMessage, res: ServerResponse, pathname: string): void {
    const asset = this.assets.get(pathname === '/index.html' ? '/' : pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return plain(res, 405, 'the console pages answer GET only\n', { Allow: 'GET, HEAD' });
    }
    if (!asset) return plain(res, 503, 'the console files are missing from this installation\n');
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, { ETag: asset.etag });
      res.end();
      return;
    }
    // Revalidated on each load (the files change with coffre's version), never stored by a shared cache.
    res.writeHead(200, {
      'Content-Type': asset.type,
      'Content-Length': asset.body.length,
      ETag: asset.etag,
      'Cache-Control': 'private, no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }
}

function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

// A browser on this machine names it so; any other name under plain HTTP is a page of another site whose
// name was made to resolve here (DNS rebinding), which must not reach the console.
function loopbackHost(host: string | undefined): boolean {
  const name = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  return (
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name) ||
    name === '[::1]'
  );
}

/**
 * Why a browser's request to the console (its pages, sign-in, or a call with the session cookie) is refused,
 * or undefined when it may go on: over plain HTTP, the session cookie and the admin token would cross a
 * network in clear, so plain HTTP is served to this machine only.
 */
export function consoleTransportRefusal(
  req: IncomingMessage,
  transport: ClientTransport,
): string | undefined {
  if (transport.secure) return undefined;
  if (!transport.fromLoopback)
    return (
      'the coffre console is served over plain HTTP only to this machine: serve TLS on the node ' +
      '([s3_api] tls_cert and tls_key, or `coffre server --tls-self-signed`), or reach it through ' +
      'an SSH tunnel (ssh -L 3903:127.0.0.1:3903 …) and open http://127.0.0.1:3903/'
    );
  if (!loopbackHost(req.headers.host))
    return 'over plain HTTP the coffre console answers only to http://127.0.0.1, http://[::1] or http://localhost';
  return undefined;
}

/** Refuses a console page with a clear message (plain text, so that it reads the same in a browser or curl). */
export function refuseConsole(res: ServerResponse, message: string): void {
  plain(res, 403, message + '\n');
}

/**
 * Why a state-changing request cannot have come from the console's own page, or undefined when it can.
 * Browsers name the page that made a request (Origin, Sec-Fetch-Site); a request another site made the
 * browser send is refused even before its CSRF token is looked at.
 */
export function crossOriginRefusal(req: IncomingMessage, transport: ClientTransport): string | undefined {
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const expected = `${transport.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
    if (origin.toLowerCase() !== expected.toLowerCase())
      return `requests from another origin (${origin.slice(0, 100)}) are refused`;
  }
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return 'requests made by another site are refused';
  return undefined;
}
