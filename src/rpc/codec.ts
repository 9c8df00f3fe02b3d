// rpc/codec: plain data across the wire. JSON, with byte buffers carried as base64 so records (inline data,
// sealed metadata, stream headers) arrive as the Buffers they left as, and S3 errors keep their code and status.
import { S3Error } from '../util/s3-error.js';

interface EncodedBytes {
  $bytes: string;
}

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (
    value &&
    typeof value === 'object' &&
    (value as { type?: string }).type === 'Buffer' &&
    Array.isArray((value as { data?: unknown }).data)
  ) {
    return { $bytes: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') };
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (
    value &&
    typeof value === 'object' &&
    typeof (value as EncodedBytes).$bytes === 'string' &&
    Object.keys(value).length === 1
  ) {
    return Buffer.from((value as EncodedBytes).$bytes, 'base64');
  }
  return value;
}

export function encodeData(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value === undefined ? null : value, replacer), 'utf8');
}

export function decodeData<T = unknown>(bytes: Buffer): T {
  return JSON.parse(bytes.toString('utf8'), reviver) as T;
}

export interface EncodedError {
  s3?: { code: string; status: number; message: string; extra: Record<string, string> };
  message: string;
}

export function encodeError(err: unknown): EncodedError {
  if (err instanceof S3Error)
    return {
      s3: { code: err.code, status: err.status, message: err.message, extra: err.extra },
      message: err.message,
    };
  return { message: err instanceof Error ? err.message : String(err) };
}

export function decodeError(e: EncodedError): Error {
  if (e.s3) return new S3Error(e.s3.code, e.s3.status, e.s3.message, e.s3.extra);
  return new Error(e.message);
}
