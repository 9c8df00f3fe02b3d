// A hostile object in a crypt remote cannot make `coffre crypt get` write, hold or inflate more than the key
// names. In the public-key modes anyone holding a public key can write a valid object; here such an object
// under a 1 MiB key holds a ZIP compressed packet that inflates to 1 GiB of zeros (about 1 MB stored). The get
// runs with its file size limited to 64 MiB (prlimit) and its resident memory measured: it must fail with one
// clear line and exit 1 — not be killed for writing past the limit — leave no output or partial file, and stay
// small. The same attack on a chunk of a passphrase (shared) remote's chunked key is refused the same way.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { constants, deflateRawSync } from 'node:zlib';
import * as openpgp from 'openpgp';
import { COFFRE_BIN, COFFRE_NODE_FLAGS } from '../helpers/server.js';
import { ok, tempDir } from '../crypt/helpers.js';
import { chunkKey, encryptedName, hashDirLower } from '../../src/crypt/names.js';
import { collect, sealPackets, type Sealing } from '../../src/crypt/openpgp.js';
import { Tag, newFormatHeader } from '../../src/crypt/packets.js';

const MiB = 1024 * 1024;
const BOMB_SIZE = 1024 * MiB;
const FILE_SIZE_LIMIT = 64 * MiB;
const RSS_LIMIT_KIB = 320 * 1024;
const ZIP = 1;

/** A compressed (ZIP) packet holding a literal packet of `size` zero bytes, built without ever holding them. */
function zipBomb(size: number): Buffer {
  const literalLength = 6 + size;
  const head = Buffer.concat([
    newFormatHeader(Tag.Literal, literalLength),
    Buffer.from([0x62, 0, 0, 0, 0, 0]),
  ]);
  // Each piece ends with a full flush: byte-aligned, no reference to what came before, so pieces concatenate.
  const flush = { finishFlush: constants.Z_FULL_FLUSH, level: 9 };
  const zeros = deflateRawSync(Buffer.alloc(MiB), flush);
  assert.equal(size % MiB, 0);
  const body = Buffer.concat([
    Buffer.from([ZIP]),
    deflateRawSync(head, flush),
    ...Array<Buffer>(size / MiB).fill(zeros),
    deflateRawSync(Buffer.alloc(0)), // the final, empty block
  ]);
  return Buffer.concat([newFormatHeader(Tag.Compressed, body.length), body]);
}

async function bombObject(sealing: Sealing): Promise<Buffer> {
  const packet = zipBomb(BOMB_SIZE);
  return collect(sealPackets([packet], packet.length, sealing));
}

function replaceObject(path: string, data: Buffer): void {
  chmodSync(join(path, '..'), 0o755);
  chmodSync(path, 0o644);
  writeFileSync(path, data);
}

function objectFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== 'tmp') walk(join(d, e.name));
      } else out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

interface Limited {
  code: number | null;
  signal: string | null;
  stderr: string;
  maxRssKiB: number;
}

/** `coffre crypt ARGS` with its file size limited and its peak resident memory recorded. */
function limitedCoffre(args: string[], env: Record<string, string>, base: string): Limited {
  const rssFile = join(base, `rss-${randomBytes(4).toString('hex')}`);
  const preload = join(base, 'record-rss.mjs');
  writeFileSync(
    preload,
    `import { writeFileSync } from 'node:fs';\n` +
      `process.on('exit', () => writeFileSync(process.env.RSS_FILE, String(process.resourceUsage().maxRSS)));\n`,
  );
  const r = spawnSync(
    'prlimit',
    [
      `--fsize=${FILE_SIZE_LIMIT}`,
      '--',
      process.execPath,
      ...COFFRE_NODE_FLAGS,
      '--import',
      preload,
      COFFRE_BIN,
      'crypt',
      ...args,
    ],
    { env: { ...process.env, ...env, RSS_FILE: rssFile }, encoding: 'utf8', maxBuffer: 16 << 20 },
  );
  let maxRssKiB = Infinity;
  try {
    maxRssKiB = Number(readFileSync(rssFile, 'utf8'));
  } catch {
    // killed before it could say
  }
  return { code: r.status, signal: r.signal, stderr: r.stderr, maxRssKiB };
}

function assertRefused(r: Limited, outDir: string): void {
  assert.equal(r.signal, null, `killed by ${r.signal} (it wrote past the key's size): ${r.stderr}`);
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^coffre: .*object refused.*longer than the \d+ bytes expected/);
  assert.ok(r.maxRssKiB < RSS_LIMIT_KIB, `peak RSS ${r.maxRssKiB} KiB`);
  assert.deepEqual(readdirSync(outDir), [], 'no output file and no partial file');
}

async function keyPair(dir: string): Promise<{ pub: string; sec: string; key: openpgp.PublicKey }> {
  const k = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ email: 'bomb@example.invalid' }],
    format: 'object',
  });
  const pub = join(dir, 'a.pub.asc');
  const sec = join(dir, 'a.sec.asc');
  writeFileSync(pub, k.publicKey.armor());
  writeFileSync(sec, k.privateKey.armor(), { mode: 0o600 });
  return { pub, sec, key: k.publicKey };
}

function annexKeyOf(data: Buffer): string {
  return `SHA256E-s${data.length}--${createHash('sha256').update(data).digest('hex')}.bin`;
}

test('crypt get: a public-key object that inflates past its key size is refused, bounded, and leaves no file', async () => {
  const base = tempDir('crypt-bomb');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const remote = join(base, 'remote');
  const outDir = join(base, 'out');
  mkdirSync(remote);
  mkdirSync(outDir);
  const a = await keyPair(base);
  ok(['init', 'r', '--type', 'directory', '--path', remote, '--encryption', 'pubkey', '--keyid', a.pub], env);
  const content = randomBytes(MiB);
  const file = join(base, 'file.bin');
  writeFileSync(file, content);
  const key = ok(['put', 'r', file, '--no-gpg', '--secret-key', a.sec], env).split(/\s+/)[0];
  assert.equal(key, annexKeyOf(content));

  // Anyone with the public key: a valid object that names nothing but inflates to 1 GiB.
  const [object] = objectFiles(remote);
  replaceObject(object, await bombObject({ kind: 'pubkeys', keys: [a.key] }));
  assert.ok(readFileSync(object).length < 2 * MiB);

  const r = limitedCoffre(
    ['get', 'r', key, '-o', join(outDir, 'file.bin'), '--no-gpg', '--secret-key', a.sec],
    env,
    base,
  );
  assertRefused(r, outDir);
});

test('crypt get: a chunk of a passphrase remote that inflates past its chunk size is refused, partial file removed', async () => {
  const base = tempDir('crypt-bomb-shared');
  const env = { COFFRE_CRYPT_HOME: join(base, 'home'), GNUPGHOME: join(base, 'nognupg') };
  const remote = join(base, 'remote');
  const outDir = join(base, 'out');
  mkdirSync(remote);
  mkdirSync(outDir);
  const chunk = 64 * 1024;
  ok(
    ['init', 's', '--type', 'directory', '--path', remote, '--encryption', 'shared', '--chunk', '64KiB'],
    env,
  );
  const content = randomBytes(3 * chunk - 100);
  const file = join(base, 'file.bin');
  writeFileSync(file, content);
  const key = ok(['put', 's', file], env).split(/\s+/)[0];

  // The shared cipher sits in the config: the HMAC key and passphrase are its two parts (git-annex's split).
  const config = JSON.parse(readFileSync(join(base, 'home', 's.json'), 'utf8')) as { cipher: string };
  const cipherText = Buffer.from(config.cipher, 'base64');
  const passphrase = cipherText.subarray(256, cipherText.length - 1);
  const name = encryptedName('HMACSHA1', cipherText.subarray(0, 256), chunkKey(key, chunk, 2));
  const object = join(remote, hashDirLower(name), name, name);
  replaceObject(object, await bombObject({ kind: 'passphrase', passphrase }));

  const r = limitedCoffre(['get', 's', key, '-o', join(outDir, 'file.bin')], env, base);
  assertRefused(r, outDir);
});
