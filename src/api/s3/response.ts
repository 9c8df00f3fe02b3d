// api/s3/response: writing S3 responses — XML bodies, errors (bare status for HEAD), common headers.
import type { ServerResponse } from 'node:http';
import { S3Error } from '../../util/s3-error.js';
import { escapeXml, toXml, type XmlNode } from './xml.js';

export function sendXml(
  res: ServerResponse,
  status: number,
  root: string,
  body: XmlNode,
  xmlns = true,
): void {
  sendRawXml(res, status, toXml(root, body, xmlns));
}

export function sendRawXml(res: ServerResponse, status: number, text: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/xml');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.statusCode = status;
  if (status !== 204 && status !== 304) res.setHeader('Content-Length', 0);
  res.end();
}

export function errorXml(err: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(err.extra)
    .map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`)
    .join('');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<Error><Code>${escapeXml(err.code)}</Code><Message>${escapeXml(err.message)}</Message>` +
    `${extra}<Resource>${escapeXml(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`
  );
}

const RETRY_AFTER_SECONDS = '1';
// Headers an error answer keeps: the request's ids, CORS, and what S3 says of a delete marker a GET met.
const KEPT_ON_ERROR = [
  'x-amz-request-id',
  'x-amz-id-2',
  'server',
  'access-control-allow-origin',
  'vary',
  'x-amz-delete-marker',
  'x-amz-version-id',
];

export function sendError(
  res: ServerResponse,
  err: S3Error,
  method: string,
  resource: string,
  requestId: string,
  opts: { close?: boolean } = {},
): void {
  if (res.headersSent) {
    // The body has started: the only honest signal left is to cut the connection.
    res.destroy(err);
    return;
  }
  for (const name of res.getHeaderNames()) {
    if (!KEPT_ON_ERROR.includes(name)) res.removeHeader(name);
  }
  res.statusCode = err.status;
  // A refusal that passes (a backend or peer unreachable, the metadata leader being chosen, keys locked):
  // when to try again.
  if (err.status === 503) res.setHeader('Retry-After', RETRY_AFTER_SECONDS);
  // The connection ends after this answer (a refused request whose body is left unread): said in the
  // answer, so that the client does not wait on it for its next request.
  if (opts.close) res.setHeader('Connection', 'close');
  // A 503 is the cluster saying "not now" (a node a request needs is down, a quorum is out of reach): said
  // to come back soon, as S3's SlowDown and ServiceUnavailable are.
  if (err.status === 503) res.setHeader('Retry-After', '1');
  if (method === 'HEAD') {
    res.setHeader('Content-Length', 0);
    res.end();
    return;
  }
  const body = errorXml(err, resource, requestId);
  res.setHeader('Content-Type', 'application/xml');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, '.000Z');
}
