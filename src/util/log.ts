// util/log: the node's logger — pino, writing to stderr either JSON lines (for log collectors) or lines a person
// reads (time, level, message, then the fields that matter). Every line is written before the call returns
// (a synchronous write to fd 2): pino's default asynchronous destination keeps lines in memory until the event
// loop gets to them, and a node killed meanwhile (SIGKILL, the OOM killer, a crash in native code) loses the
// lines of requests it had already answered — measured by bench/logs.ts.
import { writeSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import pino, { type DestinationStream, type Logger } from 'pino';

export type LogFormat = 'pretty' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['pretty', 'json'];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogOptions {
  level: LogLevel;
  format: LogFormat;
}

/** The environment's word on the log, which wins over coffre.toml (COFFRE_LOG_LEVEL, COFFRE_LOG_FORMAT). */
export const LOG_LEVEL_ENV = 'COFFRE_LOG_LEVEL';
export const LOG_FORMAT_ENV = 'COFFRE_LOG_FORMAT';

export function isLogLevel(v: string): v is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

export function isLogFormat(v: string): v is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(v);
}

/** Pretty on a terminal, JSON otherwise (a pipe to journald, a file, a collector). */
export function defaultLogFormat(): LogFormat {
  return process.stderr.isTTY ? 'pretty' : 'json';
}

export function createLogger(options: LogOptions): Logger {
  return pino(
    {
      level: options.level,
      base: undefined,
      // Defence in depth: fields that could hold secrets never reach a log line.
      redact: {
        paths: [
          'secret',
          'secretAccessKey',
          'rpcSecret',
          'adminToken',
          'headers.authorization',
          '*.authorization',
        ],
        censor: '[redacted]',
      },
    },
    options.format === 'pretty' ? new PrettyStderr(process.stderr.isTTY) : new SyncStderr(),
  );
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** Writes each line whole, at once (an EAGAIN on a full non-blocking pipe is retried, never dropped). */
function writeLine(text: string): void {
  const bytes = Buffer.from(text);
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(2, bytes, off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The reader is gone: nothing more can be said there, and the node must not fail for it.
      if (code === 'EPIPE' || code === 'EBADF') return;
      if (code !== 'EAGAIN') throw err;
      // A full non-blocking pipe: wait a moment for its reader rather than spin.
      Atomics.wait(PAUSE, 0, 0, 1);
    }
  }
}

class SyncStderr implements DestinationStream {
  write(line: string): void {
    writeLine(line);
  }
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const LEVEL_COLOURS: Readonly<Record<number, string>> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';

// Fields every line has, shown in the line's own place rather than as key=value.
const OWN_FIELDS = new Set(['level', 'time', 'msg']);
// A request line's fields, shown as `GET bucket/key → 404 NoSuchKey: reason`, then the rest.
const REQUEST_FIELDS = new Set(['method', 'bucket', 'key', 'status', 'error', 'reason']);

class PrettyStderr implements DestinationStream {
  constructor(private readonly colour: boolean) {}

  write(line: string): void {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      writeLine(line);
      return;
    }
    writeLine(formatPretty(entry, this.colour && !process.env.NO_COLOR) + '\n');
  }
}

/** One log entry as a person reads it: `2026-12-03 09:41:07.123 INFO  message  key=value …`. */
export function formatPretty(entry: Record<string, unknown>, colour = false): string {
  const level = Number(entry.level);
  const name = (LEVEL_NAMES[level] ?? String(entry.level)).padEnd(5);
  const time = typeof entry.time === 'number' ? localTime(new Date(entry.time)) : '';
  const paint = (code: string | undefined, s: string) => (colour && code ? `${code}${s}${RESET}` : s);
  const isRequest = entry.msg === 's3 request' && typeof entry.method === 'string';
  const message = isRequest ? describeRequest(entry) : String(entry.msg ?? '');
  const skip = isRequest ? REQUEST_FIELDS : new Set<string>();
  const fields = Object.entries(entry)
    .filter(([k, v]) => !OWN_FIELDS.has(k) && !skip.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${fieldValue(v)}`)
    .join(' ');
  return [paint(DIM, time), paint(LEVEL_COLOURS[level], name), message, fields ? paint(DIM, fields) : '']
    .filter(Boolean)
    .join(' ');
}

// `PUT photos/2024/a.jpg → 200`, `GET photos/missing → 404 NoSuchKey: The specified key does not exist.`
function describeRequest(e: Record<string, unknown>): string {
  const target = [e.bucket, e.key].filter((p) => typeof p === 'string' && p !== '').join('/') || '/';
  const status = Number(e.status);
  let outcome = String(e.status);
  if (status >= 400) {
    const code = typeof e.error === 'string' ? e.error : (STATUS_CODES[status] ?? 'error');
    outcome += ` ${code}` + (typeof e.reason === 'string' ? `: ${e.reason}` : '');
  }
  return `${String(e.method)} ${target} → ${outcome}`;
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

function localTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
  );
}
