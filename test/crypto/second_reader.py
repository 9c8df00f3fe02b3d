#!/usr/bin/env python3
"""An independent reader of coffre's at-rest formats, written from docs/formats-sse.md alone.

Usage:
  second_reader.py stream ROOT_HEX BUCKET_ID VERSION_ID OBJECT_KEY PART_NUMBER|- [START END]  < stream > plaintext
  second_reader.py metadata ROOT_HEX BUCKET_ID VERSION_ID OBJECT_KEY                     < sealed > json
  second_reader.py record ROOT_HEX BUCKET_ID VERSION_ID OBJECT_KEY                       < json > json
The record mode reads {"size", "etag", "segments": [{partNumber?, plainSize, storedSize, header (hex),
inline (hex)? | blocks: [{hash, size}]}], "manifest"?: base64} and writes the segments digest, each part's
ETag, the multipart ETag and parts tag, and the opened manifest (section 4.1).
With START END, stdin holds only the ciphertext slice for plaintext range [START, END); the stream's 17-byte
header is then read from the environment variable STREAM_HEADER (hex) and the plaintext size from PLAIN_SIZE.
Exit status 1 with a message on stderr when anything fails to verify.
"""
import hashlib
import hmac
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

C = 65536
T = 16
S = C + T
HEADER = 17


def lp(b):
    return struct.pack(">I", len(b)) + b


def object_key(root, purpose, bucket, version, key):
    msg = b"coffre/object-key/v1\x00" + b"".join(lp(x.encode()) for x in (purpose, bucket, version, key))
    return hmac.new(root, msg, hashlib.sha256).digest()


def stream_key(data_key, header, context):
    if len(header) != HEADER or header[0] != 1:
        raise ValueError("bad stream header")
    return hmac.new(data_key, b"coffre/aead-stream/v1\x00" + header + lp(context), hashlib.sha256).digest()


def nonce(i, final):
    return bytes([0, 0, 0, 1 if final else 0]) + struct.pack(">Q", i)


def read_stream(data_key, data, context):
    key = AESGCM(stream_key(data_key, data[:HEADER], context))
    body = data[HEADER:]
    if len(body) < T:
        raise ValueError("truncated")
    out = []
    i = 0
    while len(body) > S:
        out.append(key.decrypt(nonce(i, False), body[:S], None))
        body = body[S:]
        i += 1
    last = key.decrypt(nonce(i, True), body, None)
    if len(last) == 0 and i > 0:
        raise ValueError("empty final chunk")
    out.append(last)
    return b"".join(out)


def read_range(data_key, header, data, context, start, end, plain_size):
    key = AESGCM(stream_key(data_key, header, context))
    n = max(1, -(-plain_size // C))
    first, last = start // C, (end - 1) // C
    out = []
    for i in range(first, last + 1):
        size = S if i != n - 1 else plain_size - i * C + T
        sealed, data = data[:size], data[size:]
        if len(sealed) != size:
            raise ValueError("truncated range")
        out.append(key.decrypt(nonce(i, i == n - 1), sealed, None))
    if data:
        raise ValueError("extra bytes")
    plain = b"".join(out)
    skip = start - first * C
    return plain[skip : skip + end - start]


def u64(n):
    return struct.pack(">Q", n)


def describe_segment(s):
    if "inline" in s:
        layout = b"\x01" + hashlib.sha256(bytes.fromhex(s["inline"])).digest()
    else:
        layout = b"\x00" + struct.pack(">I", len(s["blocks"]))
        layout += b"".join(lp(b["hash"].encode()) + u64(b["size"]) for b in s["blocks"])
    return (
        struct.pack(">I", s.get("partNumber", 0))
        + u64(s["plainSize"])
        + u64(s["storedSize"])
        + lp(bytes.fromhex(s["header"]))
        + layout
    )


def read_record(root, bucket, version, okey, rec):
    import base64
    import json

    mk = hmac.new(
        object_key(root, "data", bucket, version, okey), b"coffre/object-manifest-key/v1\x00", hashlib.sha256
    ).digest()
    segs = rec["segments"]
    digest = hashlib.sha256(
        b"coffre/object-segments/v1\x00" + struct.pack(">I", len(segs)) + b"".join(lp(describe_segment(s)) for s in segs)
    ).hexdigest()
    etags = [hmac.new(mk, b"coffre/part-etag/v1\x00" + describe_segment(s), hashlib.sha256).digest()[:16] for s in segs]
    etag = '"%s-%d"' % (hashlib.md5(b"".join(etags)).hexdigest(), len(etags))
    k = hashlib.sha256(b"coffre/object-parts-key/v1\x00" + struct.pack(">I", len(etags)) + b"".join(etags)).digest()
    msg = b"coffre/object-parts/v1\x00" + struct.pack(">I", len(etags)) + u64(rec["size"]) + lp(etag.encode())
    out = {
        "segments": digest,
        "partEtags": ['"%s"' % e.hex() for e in etags],
        "etag": etag,
        "partsTag": hmac.new(k, msg, hashlib.sha256).hexdigest(),
    }
    if "manifest" in rec:
        sealed = base64.b64decode(rec["manifest"])
        if sealed[0] != 1:
            raise ValueError("bad version")
        out["manifest"] = json.loads(AESGCM(mk).decrypt(sealed[1:13], sealed[13:], b"coffre/object-manifest/v1"))
    return json.dumps(out).encode()


def main():
    mode, root_hex, bucket, version, okey = sys.argv[1:6]
    root = bytes.fromhex(root_hex)
    data = sys.stdin.buffer.read()
    try:
        if mode == "record":
            import json

            plain = read_record(root, bucket, version, okey, json.loads(data))
        elif mode == "metadata":
            mk = object_key(root, "metadata", bucket, version, okey)
            if data[0] != 1:
                raise ValueError("bad version")
            plain = AESGCM(mk).decrypt(data[1:13], data[13:], b"coffre/object-metadata/v1")
        else:
            part = sys.argv[6]
            context = b"" if part == "-" else b"part" + struct.pack(">I", int(part))
            dk = object_key(root, "data", bucket, version, okey)
            if len(sys.argv) > 7:
                start, end = int(sys.argv[7]), int(sys.argv[8])
                header = bytes.fromhex(os.environ["STREAM_HEADER"])
                plain = read_range(dk, header, data, context, start, end, int(os.environ["PLAIN_SIZE"]))
            else:
                plain = read_stream(dk, data, context)
    except Exception as e:  # InvalidTag, ValueError, IndexError
        sys.stderr.write("refused: %s\n" % (type(e).__name__,))
        sys.exit(1)
    sys.stdout.buffer.write(plain)


if __name__ == "__main__":
    main()
