// api/s3/headers: the object headers S3 stores and returns, user metadata, and conditional requests.
import { etagInList } from '../../util/etag.js';
import type { IncomingHttpHeaders } from 'node:http';
import { S3Error, S3Errors } from '../../util/s3-error.js';

// Standard headers stored with an object and returned on GET/HEAD.
export const STORED_HEADERS = [
  'content-type',
  'content-encoding',
  'content-disposition',
  'content-language',
  'cache-control',
  'expires',
] as const;

export const MAX_USER_METADATA_BYTES = 2048;

export function storedHeaders(headers: IncomingHttpHeaders | Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    const v = headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  if (out['content-encoding']) {
    // aws-chunked is a transfer detail of the request, not a property of the object.
    const codings = out['content-encoding']
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s && s.toLowerCase() !== 'aws-chunked');
    if (codings.length) out['content-encoding'] = codings.join(',');
    else delete out['content-encoding'];
  }
  return out;
}

export function userMetadata(headers: IncomingHttpHeaders | Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  let size = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : String(value);
    const key = name.slice('x-amz-meta-'.length);
    out[key] = v;
    size += Buffer.byteLength(key) + Buffer.byteLength(v);
  }
  if (size > MAX_USER_METADATA_BYTES) {
    throw new S3Error(
      'MetadataTooLarge',
      400,
      'Your metadata headers exceed the maximum allowed metadata size.',
    );
  }
  return out;
}

function parseHttpDate(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

export interface ConditionHeaders {
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifUnmodifiedSince?: string;
}

// RFC 7232 evaluation order as S3 applies it. Returns 304/412 status to answer with, or undefined to proceed.
export function evaluateConditions(
  c: ConditionHeaders,
  etag: string,
  lastModifiedMs: number,
  forRead: boolean,
): 304 | 412 | undefined {
  const lastModified = Math.floor(lastModifiedMs / 1000) * 1000;
  if (c.ifMatch !== undefined) {
    if (!etagInList(c.ifMatch, etag)) return 412;
  } else {
    const since = parseHttpDate(c.ifUnmodifiedSince);
    if (since !== undefined && lastModified > since) return 412;
  }
  if (c.ifNoneMatch !== undefined) {
    if (etagInList(c.ifNoneMatch, etag)) return forRead ? 304 : 412;
  } else {
    const since = parseHttpDate(c.ifModifiedSince);
    if (since !== undefined && lastModified <= since) return forRead ? 304 : 412;
  }
  return undefined;
}

export function conditionsFrom(headers: IncomingHttpHeaders, prefix = ''): ConditionHeaders {
  const get = (n: string) => {
    const v = headers[prefix + n];
    return typeof v === 'string' ? v : undefined;
  };
  return {
    ifMatch: get('if-match'),
    ifNoneMatch: get('if-none-match'),
    ifModifiedSince: get('if-modified-since'),
    ifUnmodifiedSince: get('if-unmodified-since'),
  };
}

export function preconditionFailed(condition = 'If-Match'): S3Error {
  return new S3Error(
    'PreconditionFailed',
    412,
    'At least one of the pre-conditions you specified did not hold',
    {
      Condition: condition,
    },
  );
}

export interface ByteRange {
  start: number;
  end: number; // exclusive
}

// `bytes=a-b`, `bytes=a-`, `bytes=-n`. A header that is not a single byte range is ignored (the whole object
// is sent), as HTTP allows; a range that starts past the end is InvalidRange.
export function parseRange(value: string | undefined, size: number): ByteRange | undefined {
  if (!value) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw invalidRange(size);
    start = Math.max(0, size - suffix);
    end = size;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size) throw invalidRange(size);
  return { start, end };
}

export function invalidRange(size: number): S3Error {
  return new S3Error('InvalidRange', 416, 'The requested range is not satisfiable', {
    ActualObjectSize: String(size),
  });
}

export function parseIntParam(
  value: string | null,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (value === null) return undefined;
  if (!/^\d+$/.test(value))
    throw S3Errors.invalidArgument(`${name} must be an integer`, { ArgumentName: name });
  const n = Number(value);
  if (n < min || n > max) {
    throw S3Errors.invalidArgument(`${name} must be between ${min} and ${max}`, { ArgumentName: name });
  }
  return n;
}

export function httpDateOr(v: string): string {
  const t = Date.parse(v);
  return Number.isNaN(t) ? v : new Date(t).toUTCString();
}
