import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  chunkCount,
  chunkKey,
  encryptedName,
  formatKey,
  hashDirLower,
  keyExtension,
  parseKey,
  sha256eKey,
} from '../../src/crypt/names.js';
import { parseSize } from '../../src/crypt/config.js';
import { decodeCount } from '../../src/crypt/s2k.js';

test('HMAC-SHA1("foo","bar") matches git-annex test-suite value', () => {
  assert.equal(
    createHmac('sha1', 'foo').update('bar').digest('hex'),
    '46b4ec586117154dacd49d664e5d63fdc88efb51',
  );
  assert.equal(
    encryptedName('HMACSHA1', Buffer.from('foo'), 'bar'),
    'GPGHMACSHA1--46b4ec586117154dacd49d664e5d63fdc88efb51',
  );
});

test('annex keys parse and serialise, chunk keys insert -S/-C after the size', () => {
  const k = 'SHA256E-s3145733--a216bf039e0f629e685c2dc1bc7a2ba8dc68b9153cb0220513ac1b29e4d27574.bin';
  const parsed = parseKey(k);
  assert.equal(parsed.backend, 'SHA256E');
  assert.equal(parsed.size, 3145733);
  assert.equal(formatKey(parsed), k);
  assert.equal(
    chunkKey(k, 1048576, 2),
    'SHA256E-s3145733-S1048576-C2--a216bf039e0f629e685c2dc1bc7a2ba8dc68b9153cb0220513ac1b29e4d27574.bin',
  );
  const withChunk = parseKey(chunkKey(k, 1048576, 4));
  assert.equal(withChunk.chunkNumber, 4);
  assert.equal(formatKey(parseKey('WORM-s5-m1700000000--foo')), 'WORM-s5-m1700000000--foo');
  assert.throws(() => parseKey('nonsense'));
  assert.throws(() => parseKey('SHA256E-sX--abc'));
  assert.throws(() => parseKey('SHA256E-S5--abc'), /chunk size and number/);
});

test('every file has at least one chunk', () => {
  assert.equal(chunkCount(0, 1048576), 1);
  assert.equal(chunkCount(12, 1048576), 1);
  assert.equal(chunkCount(3145733, 1048576), 4);
  assert.equal(chunkCount(2097152, 1048576), 2);
});

test('hashdirlower matches git-annex (fixture values), chunk fields ignored', () => {
  assert.equal(
    hashDirLower('SHA256E-s12--a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447.txt'),
    'e7d/d01',
  );
  assert.equal(
    hashDirLower('SHA256E-s3145733--a216bf039e0f629e685c2dc1bc7a2ba8dc68b9153cb0220513ac1b29e4d27574.bin'),
    'edc/dff',
  );
  assert.equal(
    hashDirLower(
      'SHA256E-s3145733-S1048576-C3--a216bf039e0f629e685c2dc1bc7a2ba8dc68b9153cb0220513ac1b29e4d27574.bin',
    ),
    'edc/dff',
  );
  assert.equal(hashDirLower('GPGHMACSHA1--7ad00ecb5e23acf9be976b6c8e11add6c12949cb'), '233/22d');
});

test('key extensions follow git-annex (at most two, each up to 4 alphanumerics)', () => {
  assert.equal(keyExtension('big.bin'), '.bin');
  assert.equal(keyExtension('a.tar.gz'), '.tar.gz');
  assert.equal(keyExtension('x.a.b.c'), '.b.c');
  assert.equal(keyExtension('photo.jpeg2000'), '');
  assert.equal(keyExtension('noext'), '');
  assert.equal(sha256eKey(0, 'e3b0', 'dir/empty.bin'), 'SHA256E-s0--e3b0.bin');
});

test('sizes parse like git-annex chunk= values', () => {
  assert.equal(parseSize('1MiB'), 1048576);
  assert.equal(parseSize('500kB'), 500000);
  assert.equal(parseSize('2 GiB'), 2 * 1024 ** 3);
  assert.equal(parseSize('4096'), 4096);
  assert.throws(() => parseSize('lots'));
  assert.throws(() => parseSize('1XB'));
});

test('S2K count byte 0xff is 65011712 bytes, as gpg uses', () => {
  assert.equal(decodeCount(0xff), 65011712);
  assert.equal(decodeCount(0x60), 65536);
});
