// api/admin/sessions: the web console's sign-in sessions. Signing in with the admin token gives the browser
// an opaque session id in an HttpOnly cookie (scripts cannot read it) and the page a CSRF token it sends in a
// header with every state-changing call: a cross-site page can make the browser send the cookie, never the
// header. Sessions live in this process only — a restart signs everyone out — and end after a while idle,
// after a fixed lifetime, or at sign-out.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { constantTimeEqual } from '../../crypto/keys.js';

export const SESSION_IDLE_MS = 30 * 60_000;
export const SESSION_LIFETIME_MS = 12 * 60 * 60_000;
// Sessions are made only by someone holding the admin token; the cap bounds memory all the same.
export const MAX_SESSIONS = 256;
export const CSRF_HEADER = 'x-coffre-csrf';

// A `__Host-` cookie must be Secure, have Path=/ and no Domain: browsers then refuse one set by a sibling
// domain or over plain HTTP. Under plain HTTP (loopback only) the prefix cannot be used.
const COOKIE_TLS = '__Host-coffre_session';
const COOKIE_HTTP = 'coffre_session';

export interface ConsoleSession {
  csrfToken: string;
  created: number;
  lastUsed: number;
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

export function sessionCookieName(secure: boolean): string {
  return secure ? COOKIE_TLS : COOKIE_HTTP;
}

/** The session id the request's cookie carries, if any (under TLS only the `__Host-` cookie counts). */
export function sessionCookie(req: IncomingMessage, secure: boolean): string | undefined {
  const name = sessionCookieName(secure);
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    if (/^[A-Za-z0-9_-]{43}$/.test(value)) return value;
  }
  return undefined;
}

export function setCookieHeader(id: string, secure: boolean): string {
  return (
    `${sessionCookieName(secure)}=${id}; Path=/; HttpOnly; SameSite=Strict; ` +
    `Max-Age=${SESSION_LIFETIME_MS / 1000}${secure ? '; Secure' : ''}`
  );
}

export function clearCookieHeader(secure: boolean): string {
  return `${sessionCookieName(secure)}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

export class ConsoleSessions {
  // By the SHA-256 of the session id: the map never holds what a cookie says, and finding an entry compares
  // digests, so the time a lookup takes tells nothing about a guessed id.
  private readonly sessions = new Map<string, ConsoleSession>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.sessions.size;
  }

  create(): { id: string; session: ConsoleSession } {
    this.sweep();
    while (this.sessions.size >= MAX_SESSIONS) {
      // Maps iterate in insertion order: the oldest session goes first.
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const t = this.now();
    const session = { csrfToken: randomBytes(32).toString('base64url'), created: t, lastUsed: t };
    this.sessions.set(digest(id), session);
    return { id, session };
  }

  /** The live session this id names, its idle time renewed; undefined if unknown or expired. */
  find(id: string | undefined): ConsoleSession | undefined {
    if (!id) return undefined;
    const key = digest(id);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    const t = this.now();
    if (t - session.lastUsed > SESSION_IDLE_MS || t - session.created > SESSION_LIFETIME_MS) {
      this.sessions.delete(key);
      return undefined;
    }
    session.lastUsed = t;
    return session;
  }

  end(id: string | undefined): void {
    if (id) this.sessions.delete(digest(id));
  }

  private sweep(): void {
    const t = this.now();
    for (const [key, s] of this.sessions) {
      if (t - s.lastUsed > SESSION_IDLE_MS || t - s.created > SESSION_LIFETIME_MS) this.sessions.delete(key);
    }
  }
}

/** Whether the request carries this session's CSRF token (compared in constant time). */
export function csrfMatches(req: IncomingMessage, session: ConsoleSession): boolean {
  const given = req.headers[CSRF_HEADER];
  if (typeof given !== 'string') return false;
  return constantTimeEqual(
    createHash('sha256').update(given).digest(),
    createHash('sha256').update(session.csrfToken).digest(),
  );
}
