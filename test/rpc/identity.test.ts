// Node keys and the rpc_secret: created with the right modes, reloaded identically, refused when exposed
// or malformed, with messages that say how to fix things and never show the secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  NODE_KEY_FILE,
  loadOrCreateNodeKey,
  parseNodeId,
  parsePeerAddress,
  parseRpcSecret,
} from '../../src/rpc/identity.js';
import { UserError } from '../../src/util/errors.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'coffre-identity-'));
}

const SECRET = 'a3'.repeat(32);

test('a node key is created with mode 0600 and reloads as the same identity', () => {
  const dir = tempDir();
  try {
    const first = loadOrCreateNodeKey(join(dir, 'data'));
    assert.match(first.id, /^[0-9a-f]{64}$/);
    const path = join(dir, 'data', NODE_KEY_FILE);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(readFileSync(path).length, 64);
    const again = loadOrCreateNodeKey(join(dir, 'data'));
    assert.equal(again.id, first.id);
    assert.deepEqual(again.secretKey, first.secretKey);
    assert.deepEqual(readFileSync(join(dir, 'data', 'node_key.pub')), first.publicKey);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a node key readable by others is refused unless allowed', () => {
  const dir = tempDir();
  try {
    const created = loadOrCreateNodeKey(dir);
    chmodSync(join(dir, NODE_KEY_FILE), 0o644);
    assert.throws(
      () => loadOrCreateNodeKey(dir),
      (e: unknown) => e instanceof UserError && /chmod 600/.test(e.message),
    );
    assert.equal(loadOrCreateNodeKey(dir, { allowInsecurePermissions: true }).id, created.id);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a damaged node key is refused', () => {
  const dir = tempDir();
  try {
    loadOrCreateNodeKey(dir);
    const path = join(dir, NODE_KEY_FILE);
    const bytes = readFileSync(path);
    bytes[40] ^= 1; // public half no longer matches the seed
    writeFileSync(path, bytes, { mode: 0o600 });
    assert.throws(() => loadOrCreateNodeKey(dir), /damaged/);
    writeFileSync(path, bytes.subarray(0, 10), { mode: 0o600 });
    assert.throws(() => loadOrCreateNodeKey(dir), /damaged: expected 64 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rpc_secret from the configuration value, a file, or the environment', () => {
  const dir = tempDir();
  try {
    assert.equal(parseRpcSecret({ value: SECRET, env: {} }).toString('hex'), SECRET);
    const file = join(dir, 'rpc_secret');
    writeFileSync(file, `${SECRET.toUpperCase()}\n`, { mode: 0o600 });
    assert.equal(parseRpcSecret({ file, env: {} }).toString('hex'), SECRET);
    const other = 'b4'.repeat(32);
    assert.equal(parseRpcSecret({ value: SECRET, env: { COFFRE_RPC_SECRET: other } }).toString('hex'), other);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad or missing rpc_secret: one clear line saying how to make one, never the value', () => {
  const dir = tempDir();
  try {
    const wrong = 'z'.repeat(64);
    for (const sources of [
      { value: wrong },
      { value: SECRET.slice(0, 62) },
      {},
      { file: join(dir, 'missing') },
    ]) {
      assert.throws(
        () => parseRpcSecret({ ...sources, env: {} }),
        (e: unknown) =>
          e instanceof UserError && /openssl rand -hex 32/.test(e.message) && !e.message.includes(wrong),
      );
    }
    assert.throws(() => parseRpcSecret({ value: SECRET, file: 'x', env: {} }), /not both/);
    assert.throws(() => parseRpcSecret({ value: '0'.repeat(64), env: {} }), /all zeros/);
    const file = join(dir, 'rpc_secret');
    writeFileSync(file, SECRET, { mode: 0o644 });
    chmodSync(file, 0o644);
    assert.throws(
      () => parseRpcSecret({ file, env: {} }),
      (e: unknown) =>
        e instanceof UserError && /readable by other users/.test(e.message) && !e.message.includes(SECRET),
    );
    assert.equal(parseRpcSecret({ file, env: {}, allowInsecurePermissions: true }).toString('hex'), SECRET);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peer addresses and node ids are parsed strictly', () => {
  const id = 'ab'.repeat(32);
  assert.deepEqual(
    { ...parsePeerAddress(`${id}@127.0.0.1:3901`), publicKey: undefined },
    { id, publicKey: undefined, host: '127.0.0.1', port: 3901 },
  );
  assert.equal(parsePeerAddress(`${id.toUpperCase()}@[::1]:3901`).host, '::1');
  assert.throws(() => parsePeerAddress('127.0.0.1:3901'), /expected <node id>@<host>:<port>/);
  assert.throws(() => parsePeerAddress(`${id}@host`), /host:port/);
  assert.throws(() => parsePeerAddress(`${id}@host:70000`), /host:port/);
  assert.throws(() => parseNodeId('abc'), /64 hexadecimal digits/);
});
