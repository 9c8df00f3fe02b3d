// Browser form uploads (S3 PostObject): a multipart/form-data body whose fields carry a base64 policy document
// signed with SigV4, followed by the file. The fields are read and the policy checked before a single byte of
// the file is handed on; the file itself is streamed, never held whole, and held to the policy's
// content-length-range as it flows.

import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { S3Error, S3Errors } from '../../util/s3-error.js';
import {
  SIGV4_ALGORITHM,
  deriveSigningKey,
  hmacSha256,
  parseAmzDate,
  parseCredential,
  signaturesEqual,
} from './signature.js';

// ---- Limits on what precedes the file (S3 itself caps the pre-file fields at 20 KB; ours are a little roomier).
const DEFAULT_MAX_FIELDS = 100;
const DEFAULT_MAX_FIELD_BYTES = 64 * 1024;
const MAX_PART_HEADER_BYTES = 8 * 1024;
/** Largest object a single POST may upload (S3's limit). */
export const MAX_POST_OBJECT_SIZE = 5 * 1024 ** 3;
/** Bytes after the file part (ignored fields, closing delimiter) read and discarded before giving up. */
const MAX_EPILOGUE_BYTES = 1024 * 1024;

export interface PostObjectOptions {
  /** Bucket named by the request URL (checked against `bucket` conditions). */
  bucket: string;
  region: string;
  lookupSecret(accessKeyId: string): Promise<string | undefined>;
  now?: Date;
  /** Accept a form without policy and signature (for buckets that allow anonymous writes). Default false. */
  allowAnonymous?: boolean;
  maxFields?: number;
  /** Total bytes of all field values before the file. */
  maxFieldBytes?: number;
}

export interface PostObjectUpload {
  /** Undefined only for an anonymous upload (allowAnonymous). */
  accessKeyId?: string;
  /** Object key, `${filename}` already replaced by the uploaded file's name. */
  key: string;
  /** Form fields that preceded the file, by lowercase name (the key field as sent, before substitution). */
  fields: Record<string, string>;
  /** File name from the file part's Content-Disposition ('' when absent). */
  filename: string;
  /** Content-Type header of the file part, if any (S3 stores the `Content-Type` form field instead). */
  fileContentType?: string;
  /** The file's bytes. Errors with EntityTooLarge / EntityTooSmall / MalformedPOSTRequest while streaming. */
  fileStream: Readable;
  /** content-length-range of the policy, when it has one. */
  contentLengthRange?: { min: number; max: number };
}

function malformedPost(detail?: string): S3Error {
  return new S3Error(
    'MalformedPOSTRequest',
    400,
    'The body of your POST request is not well-formed multipart/form-data.' + (detail ? ` (${detail})` : ''),
  );
}

function policyViolation(detail: string): S3Error {
  return S3Errors.accessDenied(`Invalid according to Policy: ${detail}`);
}

function invalidPolicy(detail: string): S3Error {
  return new S3Error('InvalidPolicyDocument', 400, `Invalid Policy: ${detail}`);
}

function missingField(name: string): S3Error {
  return S3Errors.invalidArgument(`Bucket POST must contain a field named '${name}'.`, {
    ArgumentName: name,
  });
}

/** Boundary of a `multipart/form-data; boundary=…` content type; MalformedPOSTRequest otherwise. */
export function multipartBoundary(contentType: string | undefined): string {
  if (contentType === undefined || !/^multipart\/form-data\s*(;|$)/i.test(contentType.trim())) {
    throw new S3Error(
      'PreconditionFailed',
      412,
      'Bucket POST must be of the enclosure-type multipart/form-data',
      { Condition: 'Bucket POST must be of the enclosure-type multipart/form-data' },
    );
  }
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw malformedPost('missing boundary');
  return boundary;
}

interface PartHeaders {
  name: string;
  filename?: string;
  contentType?: string;
}

/** Reads `name="…"`-style parameters of a Content-Disposition value. */
function dispositionParams(value: string): Map<string, string> {
  const params = new Map<string, string>();
  const re = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(value)) !== null) {
    const raw = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3].trim();
    params.set(m[1].toLowerCase(), raw);
  }
  return params;
}

/**
 * Pull-based reader over the request body: keeps at most one unconsumed piece plus a bounded line, so nothing
 * accumulates beyond the configured limits.
 */
class BodyReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly it: AsyncIterator<Buffer | string>;

  constructor(body: Readable) {
    this.it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    return true;
  }

  /** Reads through the next occurrence of `needle`, returning what came before (bounded by `limit`). */
  async readUntil(needle: Buffer, limit: number, onLimit: () => S3Error): Promise<Buffer> {
    let from = 0;
    while (true) {
      const idx = this.buf.indexOf(needle, from);
      if (idx >= 0) {
        if (idx > limit) throw onLimit();
        const out = this.buf.subarray(0, idx);
        this.buf = this.buf.subarray(idx + needle.length);
        return out;
      }
      if (this.buf.length > limit + needle.length) throw onLimit();
      from = Math.max(0, this.buf.length - needle.length + 1);
      if (!(await this.fill())) throw malformedPost('unexpected end of body');
    }
  }

  /** Reads exactly `n` bytes (small n), or fewer if the body ends. */
  async peek(n: number): Promise<Buffer> {
    while (this.buf.length < n && (await this.fill()));
    return this.buf.subarray(0, Math.min(n, this.buf.length));
  }

  skip(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  /**
   * Streams everything up to `needle`: yields slices of the incoming buffers, holding back only the last
   * needle.length - 1 bytes that might start a delimiter split across reads.
   */
  async *streamUntil(needle: Buffer): AsyncGenerator<Buffer> {
    while (true) {
      const idx = this.buf.indexOf(needle);
      if (idx >= 0) {
        if (idx > 0) yield this.buf.subarray(0, idx);
        this.buf = this.buf.subarray(idx + needle.length);
        return;
      }
      const safe = this.buf.length - (needle.length - 1);
      if (safe > 0) {
        const out = this.buf.subarray(0, safe);
        this.buf = this.buf.subarray(safe);
        yield out;
      }
      if (!(await this.fill())) throw malformedPost('the file part is not terminated');
    }
  }

  /** Discards the rest of the body, up to `limit` bytes. */
  async drain(limit: number): Promise<void> {
    let seen = this.buf.length;
    this.buf = Buffer.alloc(0);
    while (await this.fill()) {
      seen += this.buf.length;
      this.buf = Buffer.alloc(0);
      if (seen > limit) throw malformedPost('too much data after the file');
    }
  }
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

async function readPartHeaders(reader: BodyReader): Promise<PartHeaders> {
  const block = await reader.readUntil(HEADER_END, MAX_PART_HEADER_BYTES, () =>
    malformedPost('part headers too long'),
  );
  let disposition: string | undefined;
  let contentType: string | undefined;
  for (const line of block.toString('utf8').split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformedPost('bad part header');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') disposition = value;
    else if (name === 'content-type') contentType = value;
  }
  if (disposition === undefined || !/^form-data\s*(;|$)/i.test(disposition)) {
    throw malformedPost('part without form-data Content-Disposition');
  }
  const params = dispositionParams(disposition);
  const name = params.get('name');
  if (name === undefined) throw malformedPost('part without a name');
  const headers: PartHeaders = { name };
  const filename = params.get('filename');
  if (filename !== undefined) headers.filename = filename;
  if (contentType !== undefined) headers.contentType = contentType;
  return headers;
}

/** After a delimiter: `--` closes the body, CRLF (after optional padding) starts another part. */
async function afterDelimiter(reader: BodyReader): Promise<'part' | 'end'> {
  const two = await reader.peek(2);
  if (two.length === 2 && two[0] === 0x2d && two[1] === 0x2d) {
    reader.skip(2);
    return 'end';
  }
  const padding = await reader.readUntil(CRLF, 64, () => malformedPost('bad delimiter line'));
  if (!/^[ \t]*$/.test(padding.toString('latin1'))) throw malformedPost('bad delimiter line');
  return 'part';
}

// ---- Policy document.

export type PolicyCondition =
  | { op: 'eq' | 'starts-with'; field: string; value: string; text: string }
  | { op: 'content-length-range'; min: number; max: number };

export interface PostPolicy {
  expiration: Date;
  conditions: PolicyCondition[];
}

/** Decodes and validates a base64 POST policy document; InvalidPolicyDocument when it is not one. */
export function parsePostPolicy(policyBase64: string): PostPolicy {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(policyBase64, 'base64').toString('utf8'));
  } catch {
    throw invalidPolicy('Policy could not be parsed as JSON.');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw invalidPolicy('Policy is not an object.');
  const { expiration, conditions } = doc as { expiration?: unknown; conditions?: unknown };
  if (typeof expiration !== 'string') throw invalidPolicy('Policy missing expiration.');
  const exp = Date.parse(expiration);
  if (Number.isNaN(exp)) throw invalidPolicy('Invalid expiration date.');
  if (!Array.isArray(conditions)) throw invalidPolicy('Policy missing conditions.');
  return { expiration: new Date(exp), conditions: conditions.map(parseCondition) };
}

function lengthBound(v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw invalidPolicy('content-length-range bounds must be non-negative integers.');
  }
  return n;
}

function parseCondition(c: unknown): PolicyCondition {
  if (Array.isArray(c)) {
    const op = typeof c[0] === 'string' ? c[0].toLowerCase() : '';
    if (op === 'content-length-range') {
      if (c.length !== 3) throw invalidPolicy('content-length-range takes two bounds.');
      const min = lengthBound(c[1]);
      const max = lengthBound(c[2]);
      if (min > max) throw invalidPolicy('content-length-range minimum exceeds maximum.');
      return { op, min, max };
    }
    if (op === 'eq' || op === 'starts-with') {
      if (c.length !== 3 || typeof c[1] !== 'string' || typeof c[2] !== 'string' || !c[1].startsWith('$')) {
        throw invalidPolicy(`Invalid condition ${JSON.stringify(c)}.`);
      }
      return { op, field: c[1].slice(1).toLowerCase(), value: c[2], text: JSON.stringify(c) };
    }
    throw invalidPolicy(`Unknown condition operator ${JSON.stringify(c[0])}.`);
  }
  if (typeof c === 'object' && c !== null) {
    const entries = Object.entries(c);
    if (entries.length !== 1 || typeof entries[0][1] !== 'string') {
      throw invalidPolicy(`Invalid condition ${JSON.stringify(c)}.`);
    }
    const [field, value] = entries[0] as [string, string];
    return { op: 'eq', field: field.replace(/^\$/, '').toLowerCase(), value, text: JSON.stringify(c) };
  }
  throw invalidPolicy(`Invalid condition ${JSON.stringify(c)}.`);
}

// Fields S3 never requires a condition for.
function exemptFromPolicy(name: string): boolean {
  return name === 'x-amz-signature' || name === 'file' || name === 'policy' || name.startsWith('x-ignore-');
}

function conditionHolds(cond: PolicyCondition & { op: 'eq' | 'starts-with' }, values: string[]): boolean {
  return values.some((value) => {
    if (cond.op === 'eq') return value === cond.value;
    // A Content-Type may list several types; each must satisfy the prefix.
    if (cond.field === 'content-type') return value.split(',').every((v) => v.trim().startsWith(cond.value));
    return value.startsWith(cond.value);
  });
}

/**
 * Checks the policy's conditions against the form. Returns the content-length-range, if any.
 * `key` is accepted when either the key as sent or the key after `${filename}` substitution satisfies it.
 */
export function checkPolicyConditions(
  policy: PostPolicy,
  fields: Record<string, string>,
  ctx: { bucket: string; key: string; now: Date },
): { min: number; max: number } | undefined {
  if (ctx.now.getTime() > policy.expiration.getTime()) throw policyViolation('Policy expired.');
  const covered = new Set<string>();
  let range: { min: number; max: number } | undefined;
  for (const cond of policy.conditions) {
    if (cond.op === 'content-length-range') {
      range = { min: cond.min, max: cond.max };
      continue;
    }
    covered.add(cond.field);
    let values: string[];
    if (cond.field === 'bucket') values = [ctx.bucket];
    else if (cond.field === 'key') values = [fields.key ?? '', ctx.key];
    else if (fields[cond.field] !== undefined) values = [fields[cond.field]];
    else if (cond.op === 'starts-with' && cond.value === '') continue;
    else values = [];
    if (!conditionHolds(cond, values)) throw policyViolation(`Policy Condition failed: ${cond.text}`);
  }
  const extra = Object.keys(fields).filter((name) => !exemptFromPolicy(name) && !covered.has(name));
  if (extra.length > 0) throw policyViolation(`Extra input fields: ${extra.join(', ')}`);
  return range;
}

async function verifyPolicySignature(
  fields: Record<string, string>,
  opts: PostObjectOptions,
): Promise<string> {
  if (fields['awsaccesskeyid'] !== undefined || fields['signature'] !== undefined) {
    throw S3Errors.invalidRequest(
      'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.',
    );
  }
  for (const name of ['x-amz-algorithm', 'x-amz-credential', 'x-amz-date', 'x-amz-signature']) {
    if (fields[name] === undefined) throw missingField(name);
  }
  if (fields['x-amz-algorithm'] !== SIGV4_ALGORITHM) {
    throw S3Errors.invalidArgument('Only the AWS4-HMAC-SHA256 algorithm is supported for POST.', {
      ArgumentName: 'x-amz-algorithm',
    });
  }
  if (fields['x-amz-security-token'] !== undefined) {
    throw new S3Error('InvalidToken', 400, 'The provided token is malformed or otherwise invalid.');
  }
  const credential = parseCredential(fields['x-amz-credential'], opts, (m, extra) =>
    S3Errors.invalidArgument(m, { ArgumentName: 'x-amz-credential', ...extra }),
  );
  const amzDate = fields['x-amz-date'];
  if (!parseAmzDate(amzDate) || amzDate.slice(0, 8) !== credential.date) {
    throw S3Errors.invalidArgument('x-amz-date is malformed or does not match the credential date.', {
      ArgumentName: 'x-amz-date',
    });
  }
  const secret = await opts.lookupSecret(credential.accessKeyId);
  if (secret === undefined) {
    throw new S3Error(
      'InvalidAccessKeyId',
      403,
      'The AWS Access Key Id you provided does not exist in our records.',
      {
        AWSAccessKeyId: credential.accessKeyId,
      },
    );
  }
  const signingKey = deriveSigningKey(secret, credential.date, credential.region, credential.service);
  const expected = hmacSha256(signingKey, fields.policy).toString('hex');
  signingKey.fill(0);
  if (!signaturesEqual(expected, fields['x-amz-signature'].toLowerCase())) {
    throw new S3Error(
      'SignatureDoesNotMatch',
      403,
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
      { AWSAccessKeyId: credential.accessKeyId },
    );
  }
  return credential.accessKeyId;
}

async function* fileBytes(
  reader: BodyReader,
  delimiter: Buffer,
  range: { min: number; max: number },
): AsyncGenerator<Buffer> {
  let size = 0;
  for await (const piece of reader.streamUntil(delimiter)) {
    size += piece.length;
    if (size > range.max) {
      throw new S3Error('EntityTooLarge', 400, 'Your proposed upload exceeds the maximum allowed size', {
        ProposedSize: String(size),
        MaxSizeAllowed: String(range.max),
      });
    }
    yield piece;
  }
  if (size < range.min) {
    throw new S3Error(
      'EntityTooSmall',
      400,
      'Your proposed upload is smaller than the minimum allowed size',
      {
        ProposedSize: String(size),
        MinSizeAllowed: String(range.min),
      },
    );
  }
  // Fields after the file are ignored, as S3 does; read them only so the request completes.
  await reader.drain(MAX_EPILOGUE_BYTES);
}

/**
 * Reads a PostObject form up to the file, authenticates its policy and checks the conditions, then returns the
 * file as a stream. Nothing of the file has been consumed when this resolves.
 */
export async function parsePostObject(
  body: Readable,
  contentType: string | undefined,
  opts: PostObjectOptions,
): Promise<PostObjectUpload> {
  const boundary = multipartBoundary(contentType);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const reader = new BodyReader(body);
  const maxFields = opts.maxFields ?? DEFAULT_MAX_FIELDS;
  let budget = opts.maxFieldBytes ?? DEFAULT_MAX_FIELD_BYTES;
  const tooLarge = () =>
    new S3Error(
      'MaxPostPreDataLengthExceeded',
      400,
      'Your POST request fields preceding the upload file were too large.',
    );

  // The first delimiter has no CRLF before it; anything before it (a preamble) is skipped within the budget.
  await reader.readUntil(Buffer.from(`--${boundary}`), budget, tooLarge);
  const fields: Record<string, string> = {};
  let count = 0;
  let file: PartHeaders | undefined;
  while ((await afterDelimiter(reader)) === 'part') {
    const part = await readPartHeaders(reader);
    const name = part.name.toLowerCase();
    if (name === 'file') {
      file = part;
      break;
    }
    if (++count > maxFields) throw tooLarge();
    const value = await reader.readUntil(delimiter, budget, tooLarge);
    budget -= value.length;
    if (fields[name] !== undefined) {
      throw S3Errors.invalidArgument(`The form field '${name}' appears more than once.`, {
        ArgumentName: name,
      });
    }
    fields[name] = value.toString('utf8');
  }
  if (!file)
    throw S3Errors.invalidArgument('POST requires exactly one file upload per request.', {
      ArgumentName: 'file',
    });
  if (fields.key === undefined) throw missingField('key');
  const filename = file.filename ?? '';
  const key = fields.key.split('${filename}').join(filename);
  if (key === '')
    throw S3Errors.invalidArgument('User key must have a length greater than 0.', { ArgumentName: 'key' });

  let accessKeyId: string | undefined;
  let range: { min: number; max: number } | undefined;
  if (fields.policy === undefined) {
    if (!opts.allowAnonymous || fields['x-amz-signature'] !== undefined) {
      throw S3Errors.accessDenied(
        'Bucket POST must contain a policy and its signature, or the bucket must allow anonymous writes.',
      );
    }
  } else {
    accessKeyId = await verifyPolicySignature(fields, opts);
    range = checkPolicyConditions(parsePostPolicy(fields.policy), fields, {
      bucket: opts.bucket,
      key,
      now: opts.now ?? new Date(),
    });
  }
  const limits = {
    min: range?.min ?? 0,
    max: Math.min(range?.max ?? MAX_POST_OBJECT_SIZE, MAX_POST_OBJECT_SIZE),
  };
  const upload: PostObjectUpload = {
    key,
    fields,
    filename,
    fileStream: ReadableStream.from(fileBytes(reader, delimiter, limits), { objectMode: false }),
  };
  if (accessKeyId !== undefined) upload.accessKeyId = accessKeyId;
  if (file.contentType !== undefined) upload.fileContentType = file.contentType;
  if (range) upload.contentLengthRange = range;
  return upload;
}
