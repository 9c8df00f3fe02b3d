// Test helper: seeded, reproducible random inputs for fuzz suites. The seed comes from COFFRE_FUZZ_SEED when
// set (to replay a failure) and is otherwise fresh; suites print it, so every failure can be replayed.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export function fuzzSeed(): number {
  const given = process.env.COFFRE_FUZZ_SEED;
  if (given !== undefined && /^\d+$/.test(given)) return Number(given) >>> 0;
  return randomBytes(4).readUInt32LE(0);
}

/** A small, fast PRNG (mulberry32): the same seed gives the same inputs on every machine. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(0, 255);
    return out;
  }

  // A string of printable ASCII, with now and then a byte no header or path should hold.
  text(maxLength: number): string {
    const n = this.int(0, maxLength);
    let s = '';
    for (let i = 0; i < n; i++) {
      s += this.chance(0.03)
        ? this.pick(['%', '\u00ff', '\u2028', '"', '<', '\\', ' '])
        : String.fromCharCode(this.int(33, 126));
    }
    return s;
  }

  /** A JSON-able value of bounded depth: what a hostile peer puts where a typed argument is expected. */
  value(depth = 3): unknown {
    const kind = this.int(0, depth > 0 ? 9 : 6);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick([0, -1, 1, 2 ** 53, -(2 ** 63), 1e308, 0.5, 65536, 4294967296]);
      case 3:
        return this.pick(HOSTILE_STRINGS);
      case 4:
        return this.text(40);
      case 5:
        return { $bytes: this.bytes(this.int(0, 64)).toString('base64') };
      case 6:
        return 'a'.repeat(this.pick([0, 63, 64, 65, 1024, 70_000]));
      case 7:
        return Array.from({ length: this.int(0, 6) }, () => this.value(depth - 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = this.int(0, 5); i > 0; i--) o[this.pick(HOSTILE_KEYS)] = this.value(depth - 1);
        return o;
      }
    }
  }
}

// Where a traversal would land if it worked: a file the suites check was never created.
export const CANARY = `/tmp/coffre-fuzz-canary-${process.pid}`;

export const HOSTILE_STRINGS = [
  '',
  '..',
  '../../node_key',
  '../../../meta/node_key',
  `../../../../../../..${CANARY}`,
  CANARY,
  '/etc/passwd',
  '%2e%2e%2f%2e%2e%2fnode_key',
  '\u0000',
  'a\u0000b',
  'constructor',
  '__proto__',
  'toString',
  '0'.repeat(64),
  'g'.repeat(64),
  'A'.repeat(64),
];

export const HOSTILE_KEYS = [
  'hash',
  'method',
  'bucketId',
  'key',
  'id',
  'name',
  'segments',
  'blocks',
  'size',
  'version',
  'roles',
  'layoutVersion',
  'from',
  'position',
  'holdMs',
  '__proto__',
  'constructor',
  'error',
];

/** The resident memory of a process, in bytes (Linux). */
export function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  return kib === undefined ? 0 : Number(kib) * 1024;
}
