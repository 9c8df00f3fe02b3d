// Test helper: a network namespace behind a veth pair, so a test can have a peer that is not on loopback
// (or daemons whose fixed ports stay private to it) without any traffic leaving the machine. Needs root;
// tests skip when it cannot be made.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';

export interface Namespace {
  name: string;
  hostAddr: string;
  peerAddr: string;
  /** The /30 both addresses are in, e.g. 10.213.7.4/30. */
  subnet: string;
}

export interface OwnedNamespace extends Namespace {
  /** The host's end of the veth pair. */
  hostLink: string;
  /** Deletes the namespace and its veth pair; safe to call twice. */
  remove(): void;
}

export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

/** Makes a namespace with a veth pair up on both ends; throws an Error saying which step failed. */
export function createNamespace(): OwnedNamespace {
  const id = randomBytes(3).toString('hex');
  const name = `coffre-${id}`;
  const [a, b] = [`cf${id}a`, `cf${id}b`];
  // A random /30 in 10.213.0.0/16, so namespaces made at once by several test processes rarely share one.
  const [x, y] = randomBytes(2);
  const base = `10.213.${x!}`;
  const last = y! & 0xfc;
  const ns = {
    name,
    hostAddr: `${base}.${last + 1}`,
    peerAddr: `${base}.${last + 2}`,
    subnet: `${base}.${last}/30`,
  };
  const remove = () => {
    // Deleting the namespace deletes the veth end inside it, and with it the pair.
    try {
      ip('netns', 'del', name);
    } catch {
      /* already gone */
    }
    try {
      ip('link', 'del', a);
    } catch {
      /* gone with the namespace */
    }
  };
  try {
    ip('netns', 'add', name);
  } catch (err) {
    throw new Error(`cannot create a network namespace: ${String(err)}`);
  }
  try {
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    ip('link', 'set', b, 'netns', name);
    ip('addr', 'add', `${ns.hostAddr}/30`, 'dev', a);
    ip('link', 'set', a, 'up');
    ip('netns', 'exec', name, 'ip', 'addr', 'add', `${ns.peerAddr}/30`, 'dev', b);
    ip('netns', 'exec', name, 'ip', 'link', 'set', b, 'up');
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    remove();
    throw new Error(`cannot set up the veth pair: ${String(err)}`);
  }
  return { ...ns, hostLink: a, remove };
}

export function makeNamespace(t: TestContext): Namespace | undefined {
  let ns: OwnedNamespace;
  try {
    ns = createNamespace();
  } catch (err) {
    t.diagnostic((err as Error).message);
    return undefined;
  }
  t.after(() => ns.remove());
  return ns;
}
