// api/s3/xml: S3's XML bodies. Output is built from plain objects (element order preserved); input is parsed
// with fast-xml-parser under size limits, and anything that is not the expected shape is MalformedXML.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { S3Errors } from '../../util/s3-error.js';

export const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

export type XmlValue = string | number | boolean | undefined | null | XmlNode | XmlValue[];
export interface XmlNode {
  [element: string]: XmlValue;
}

export function escapeXml(s: string): string {
  // Control characters are not allowed raw in XML 1.0: they become character references.
  // eslint-disable-next-line no-control-regex
  return s.replace(/[&<>"'\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      default:
        return `&#${c.charCodeAt(0)};`;
    }
  });
}

function render(name: string, value: XmlValue, out: string[]): void {
  if (value === undefined || value === null) return;
  if (Array.isArray(value)) {
    for (const v of value) render(name, v, out);
    return;
  }
  if (typeof value === 'object') {
    out.push(`<${name}>`);
    for (const [k, v] of Object.entries(value)) render(k, v, out);
    out.push(`</${name}>`);
    return;
  }
  out.push(`<${name}>${escapeXml(String(value))}</${name}>`);
}

// `<?xml …?><Root xmlns="…">…</Root>` from a plain object.
export function toXml(root: string, body: XmlNode, xmlns = true): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(xmlns ? `<${root} xmlns="${S3_XMLNS}">` : `<${root}>`);
  for (const [k, v] of Object.entries(body)) render(k, v, out);
  out.push(`</${root}>`);
  return out.join('');
}

// Elements whose text is a user's string kept exactly: an object key may begin or end with spaces, and trimming
// it would make DeleteObjects delete a different object. Every other value is trimmed.
const VERBATIM_ELEMENTS = new Set(['Key']);

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  removeNSPrefix: true,
  // The parser's own entity handling leaves character references (&#34; &#x9;) undecoded, and Go clients
  // (rclone, restic's minio-go) write every quote of an ETag as &#34;: decode all of XML's forms in one pass.
  processEntities: false,
  tagValueProcessor: (name: string, value: string) =>
    decodeXmlText(VERBATIM_ELEMENTS.has(name) ? value : value.trim()),
  isArray: () => false,
});

// Without trimming, the indentation between child elements shows up as '#text' entries: drop them.
function dropIndentation(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dropIndentation);
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '#text' && typeof v === 'string' && v.trim() === '') continue;
    out[k] = dropIndentation(v);
  }
  return out;
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/**
 * Replaces XML's five named entities and decimal/hex character references, once (no double decoding). Any other
 * `&` (an undeclared entity, a bare ampersand) is MalformedXML: S3 bodies have no DTD to declare entities in.
 */
export function decodeXmlText(text: string): string {
  return text.replace(
    /&(?:#(\d{1,7})|#x([0-9a-fA-F]{1,6})|(amp|lt|gt|quot|apos));|&/g,
    (ref, dec?: string, hex?: string, name?: string) => {
      if (name) return NAMED_ENTITIES[name]!;
      if (dec === undefined && hex === undefined) throw S3Errors.malformedXml();
      const code = dec !== undefined ? parseInt(dec, 10) : parseInt(hex!, 16);
      if (code === 0 || code > 0x10ffff) throw S3Errors.malformedXml();
      return String.fromCodePoint(code);
    },
  );
}

export const MAX_XML_BODY = 1024 * 1024;

// Parses a request body and returns the children of the expected root element.
export function parseXml(text: string, root: string): Record<string, unknown> {
  if (text.trim().length === 0 || XMLValidator.validate(text) !== true) throw S3Errors.malformedXml();
  // A document type declaration could define entities; S3 documents never carry one.
  if (/<!DOCTYPE/i.test(text)) throw S3Errors.malformedXml();
  let doc: Record<string, unknown>;
  try {
    doc = dropIndentation(parser.parse(text)) as Record<string, unknown>;
  } catch {
    throw S3Errors.malformedXml();
  }
  const content = doc[root];
  if (content === undefined) throw S3Errors.malformedXml();
  if (content === '' || content === null) return {};
  if (typeof content !== 'object') throw S3Errors.malformedXml();
  return content as Record<string, unknown>;
}

// Elements that may appear once or many times, as an array.
export function asList(v: unknown): unknown[] {
  if (v === undefined || v === null || v === '') return [];
  return Array.isArray(v) ? v : [v];
}

export function asText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw S3Errors.malformedXml();
}
