// util/etag: ETag lists as HTTP conditions carry them (If-Match: "a", W/"b", *).

export function etagInList(list: string, etag: string): boolean {
  const bare = etag.replace(/"/g, '');
  return list
    .split(',')
    .map((s) => s.trim().replace(/^W\//, '').replace(/"/g, ''))
    .some((s) => s === '*' || s === bare);
}
