// Every known-answer case of the public Secret Handshake test vectors (test/net/fixtures/shs-vectors.json,
// MIT, see shs-vectors.LICENSE) run against the pure handshake steps: each case names a step, its
// arguments and the expected result (state, bytes or null), all binary values in hex.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import * as shs from '../../src/net/handshake.js';

interface VectorCase {
  name: string;
  args: unknown[];
  result: unknown;
}

const vectorsUrl = new URL('../../../test/net/fixtures/shs-vectors.json', import.meta.url);
const cases = JSON.parse(readFileSync(vectorsUrl, 'utf8')) as VectorCase[];

/** Hex strings become Buffers; everything else (null, booleans, numbers) is kept. */
function fromHex(value: unknown): unknown {
  if (typeof value === 'string') return Buffer.from(value, 'hex');
  if (Array.isArray(value)) return value.map(fromHex);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromHex(v)]));
  }
  return value;
}

function toHex(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (Array.isArray(value)) return value.map(toHex);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, toHex(v)]),
    );
  }
  return value;
}

type Step = (...args: never[]) => unknown;
const steps: Record<string, Step> = {
  initialize: shs.initialize,
  createChallenge: shs.createChallenge,
  verifyChallenge: shs.verifyChallenge,
  clientVerifyChallenge: shs.clientVerifyChallenge,
  clientCreateAuth: shs.clientCreateAuth,
  serverVerifyAuth: shs.serverVerifyAuth,
  serverCreateAccept: shs.serverCreateAccept,
  clientVerifyAccept: shs.clientVerifyAccept,
  clean: shs.clean,
  toKeys: shs.toKeys,
};

test('the vector file has the 159 published cases', () => {
  assert.equal(cases.length, 159);
});

interface RecordedState {
  local: { kx_pk: string };
  remote: { kx_pk?: string };
  auth?: unknown;
}

/**
 * The reference's clean() mutates its argument, so the recorded argument of a `clean` case is already the
 * cleaned state. Its real input is the state the same session had just before: the result of the
 * serverVerifyAuth / clientVerifyAccept case with the same ephemeral keys (plus what authorize attached).
 */
function cleanInput(index: number): unknown {
  const recorded = cases[index].args[0] as RecordedState;
  for (let j = index - 1; j >= 0; j--) {
    const c = cases[j];
    if (c.name !== 'serverVerifyAuth' && c.name !== 'clientVerifyAccept') continue;
    const r = c.result as RecordedState | null;
    if (r && r.local.kx_pk === recorded.local.kx_pk && r.remote.kx_pk === recorded.remote.kx_pk) {
      return recorded.auth === undefined ? r : { ...r, auth: recorded.auth };
    }
  }
  throw new Error(`no state before clean case ${index}`);
}

cases.forEach((c, i) => {
  test(`vector ${i}: ${c.name}`, () => {
    const step = steps[c.name];
    assert.ok(step, `no step named ${c.name}`);
    const args = (c.name === 'clean' ? [cleanInput(i)] : c.args).map(fromHex) as never[];
    const result = step(...args);
    assert.deepEqual(toHex(result), c.result);
  });
});

test('a tampered challenge MAC does not verify', () => {
  const init = cases.find((c) => c.name === 'verifyChallenge' && c.result !== null);
  assert.ok(init);
  const [state, challenge] = init.args.map(fromHex) as [shs.ShsState, Buffer];
  challenge[0] ^= 1;
  assert.equal(shs.verifyChallenge(state, challenge), null);
});

test('a small-order ephemeral key is refused (all-zero DH)', () => {
  const init = cases.find((c) => c.name === 'verifyChallenge' && c.result !== null);
  assert.ok(init);
  const [state] = init.args.map(fromHex) as [shs.ShsState];
  // A hello with a valid network-key MAC carrying the zero point: only the DH check can refuse it.
  const zeroPoint = Buffer.alloc(32);
  const mac = createHmac('sha512', state.app_key).update(zeroPoint).digest().subarray(0, 32);
  assert.equal(shs.verifyChallenge(state, Buffer.concat([mac, zeroPoint])), null);
});
