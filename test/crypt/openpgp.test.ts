import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import * as openpgp from 'openpgp';
import {
  CfbDecryptor,
  IntegrityError,
  OversizeError,
  WrongKeyError,
  collect,
  decryptMessage,
  encryptMessage,
  sealPackets,
  unwrapWithKeys,
} from '../../src/crypt/openpgp.js';
import { Tag, newFormatHeader } from '../../src/crypt/packets.js';

const MAX = { maxLength: 16 << 20 };
const pass = Buffer.from('x'.repeat(428));

test('CFB decryption as ECB + XOR matches OpenSSL CFB for every key size and any split of the input', () => {
  for (const bits of [128, 192, 256]) {
    const key = randomBytes(bits / 8);
    const plain = randomBytes(100_003);
    const c = createCipheriv(`aes-${bits}-cfb`, key, Buffer.alloc(16));
    const sealed = Buffer.concat([c.update(plain), c.final()]);
    // Pieces of awkward sizes (1 byte, a block ± 1, unaligned offsets), and the whole at once.
    for (const sizes of [[1, 15, 17, 3, 4096, 33, 1], [100_003], [16, 16, 16, 5]]) {
      const d = new CfbDecryptor(`aes-${bits}-cfb`, key);
      const out: Buffer[] = [];
      let at = 0;
      for (let i = 0; at < sealed.length; i++) {
        const n = sizes[i % sizes.length]!;
        out.push(d.update(sealed.subarray(at, at + n)));
        at += n;
      }
      out.push(d.final());
      assert.deepEqual(Buffer.concat(out), plain, `aes-${bits}, pieces ${sizes.join(',')}`);
    }
  }
});

test('passphrase sealing round-trips, across several pieces and an empty message', async () => {
  const data = randomBytes(300_000);
  const pieces = [data.subarray(0, 1), data.subarray(1, 70_000), data.subarray(70_000)];
  const sealed = await collect(encryptMessage(pieces, data.length, { kind: 'passphrase', passphrase: pass }));
  // feed it back in awkward piece sizes to exercise the packet reader
  const parts: Buffer[] = [];
  for (let i = 0; i < sealed.length; i += 7777) parts.push(sealed.subarray(i, i + 7777));
  assert.deepEqual(await collect(decryptMessage(parts, { passphrase: pass }, MAX)), data);
  const empty = await collect(encryptMessage([], 0, { kind: 'passphrase', passphrase: pass }));
  assert.equal((await collect(decryptMessage([empty], { passphrase: pass }, MAX))).length, 0);
});

test('a flipped byte fails the integrity check; a wrong passphrase is reported as such', async () => {
  const data = randomBytes(5000);
  const sealed = await collect(encryptMessage([data], data.length, { kind: 'passphrase', passphrase: pass }));
  const bad = Buffer.from(sealed);
  bad[bad.length - 100] ^= 1;
  await assert.rejects(collect(decryptMessage([bad], { passphrase: pass }, MAX)), IntegrityError);
  await assert.rejects(
    collect(decryptMessage([sealed.subarray(0, sealed.length - 30)], { passphrase: pass }, MAX)),
  );
  await assert.rejects(
    collect(decryptMessage([sealed], { passphrase: Buffer.from('other') }, MAX)),
    WrongKeyError,
  );
});

// Where the first SEIPD packet's body starts, walking the packet headers before it (RFC 4880 §4.2).
function seipdBodyOffset(message: Buffer): number {
  let at = 0;
  while (at < message.length) {
    const ctb = message[at]!;
    let tag: number;
    let headerLength: number;
    let bodyLength: number;
    if (ctb & 0x40) {
      tag = ctb & 0x3f;
      const first = message[at + 1]!;
      if (first < 192) [headerLength, bodyLength] = [2, first];
      else if (first < 224) [headerLength, bodyLength] = [3, ((first - 192) << 8) + message[at + 2]! + 192];
      else if (first === 255) [headerLength, bodyLength] = [6, message.readUInt32BE(at + 2)];
      else [headerLength, bodyLength] = [2, 1 << (first & 0x1f)];
    } else {
      tag = (ctb >> 2) & 0x0f;
      const sizeBytes = [1, 2, 4][ctb & 3]!;
      headerLength = 1 + sizeBytes;
      bodyLength = message.readUIntBE(at + 1, sizeBytes);
    }
    if (tag === Tag.SEIPD) return at + headerLength;
    at += headerLength + bodyLength;
  }
  throw new Error('no SEIPD packet');
}

test('opened on a worker (large objects): same plaintext, same errors', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const sealed = await collect(encryptMessage([data], data.length, { kind: 'passphrase', passphrase: pass }));
  const pieces = (b: Buffer) => [b.subarray(0, 1000), b.subarray(1000, 1_500_001), b.subarray(1_500_001)];
  const offThread = { offThread: true, maxLength: data.length };
  assert.deepEqual(await collect(decryptMessage(pieces(sealed), { passphrase: pass }, offThread)), data);
  const bad = Buffer.from(sealed);
  bad[bad.length - 100] ^= 1;
  await assert.rejects(collect(decryptMessage(pieces(bad), { passphrase: pass }, offThread)), IntegrityError);
  await assert.rejects(
    collect(decryptMessage([sealed.subarray(0, sealed.length - 30)], { passphrase: pass }, offThread)),
    /truncated/,
  );
  // A damaged random prefix fails its quick check on the worker, reported as a wrong key (or corruption).
  const broken = Buffer.from(sealed);
  assert.equal(sealed[seipdBodyOffset(sealed)], 1, 'SEIPD version 1');
  broken[seipdBodyOffset(sealed) + 1 + 5] ^= 0xff; // past the version octet, inside the random prefix
  await assert.rejects(collect(decryptMessage([broken], { passphrase: pass }, offThread)), (err: Error) =>
    ['WrongKeyError', 'IntegrityError'].includes(err.name),
  );
});

test('a source that lies about its size is refused', async () => {
  await assert.rejects(
    collect(encryptMessage([Buffer.alloc(10)], 5, { kind: 'passphrase', passphrase: pass })),
  );
  await assert.rejects(
    collect(encryptMessage([Buffer.alloc(3)], 5, { kind: 'passphrase', passphrase: pass })),
  );
});

test('public-key sealing round-trips and names the key when the secret key is wrong', async () => {
  const mk = (email: string) =>
    openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email }], format: 'object' });
  const a = await mk('a@example.invalid');
  const b = await mk('b@example.invalid');
  const data = randomBytes(10_000);
  const sealed = await collect(encryptMessage([data], data.length, { kind: 'pubkeys', keys: [a.publicKey] }));
  const opening = (k: openpgp.PrivateKey) => ({
    unwrapSessionKey: (p: Buffer, ids: string[]) => unwrapWithKeys(p, ids, [k]),
  });
  assert.deepEqual(await collect(decryptMessage([sealed], opening(a.privateKey), MAX)), data);
  await assert.rejects(
    collect(decryptMessage([sealed], opening(b.privateKey), MAX)),
    /no secret key for this object/,
  );
});

test('a message holds no more than the caller allows: literal length, inflated bytes, nesting, key packets', async () => {
  const sealing = { kind: 'passphrase' as const, passphrase: pass };
  const literal = (data: Buffer) =>
    Buffer.concat([newFormatHeader(Tag.Literal, 6 + data.length), Buffer.from([0x62, 0, 0, 0, 0, 0]), data]);
  const compressed = (inner: Buffer) => {
    const body = Buffer.concat([Buffer.from([1]), deflateRawSync(inner)]);
    return Buffer.concat([newFormatHeader(Tag.Compressed, body.length), body]);
  };
  const seal = (packet: Buffer) => collect(sealPackets([packet], packet.length, sealing));
  const open = (m: Buffer, maxLength: number) =>
    collect(decryptMessage([m], { passphrase: pass }, { maxLength }));
  const data = randomBytes(1000);

  assert.deepEqual(await open(await seal(literal(data)), 1000), data);
  await assert.rejects(open(await seal(literal(data)), 999), OversizeError);
  assert.deepEqual(await open(await seal(compressed(literal(data))), 1000), data);
  await assert.rejects(open(await seal(compressed(literal(Buffer.alloc(100_000)))), 1000), OversizeError);
  // Inflated bytes that are not content (a padding packet) count too.
  const padding = Buffer.concat([newFormatHeader(Tag.Padding, 1 << 20), Buffer.alloc(1 << 20)]);
  await assert.rejects(
    open(await seal(compressed(Buffer.concat([padding, literal(data)]))), 1000),
    /compressed content is larger/,
  );
  await assert.rejects(open(await seal(compressed(compressed(literal(data)))), 1000), /nested too deeply/);
  // Many session-key packets before the data.
  const message = await seal(literal(data));
  const skesk = message.subarray(0, 2 + message[1]); // a new-format header with a one-byte length
  const crowded = Buffer.concat([...Array<Buffer>(33).fill(skesk), message.subarray(skesk.length)]);
  await assert.rejects(open(crowded, 1000), /more than 32 session-key packets/);
});
