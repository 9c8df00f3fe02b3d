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

/** Nodes each in a network namespace of their own, joined by a bridge in the test's namespace. */
export interface BridgedNet {
  // The bridge's address: this process (and nodes it runs outside the namespaces) reach every node from it.
  hostAddr: string;
  nodes: { ns: string; addr: string }[];
  /** Cuts every node of `side` off from every other namespaced node (both ways); the host still reaches all. */
  isolate(side: number[]): void;
  /** Undoes every cut. */
  heal(): void;
}

export function makeBridgedNet(t: TestContext, count: number): BridgedNet | undefined {
  const id = randomBytes(3).toString('hex');
  const bridge = `cfbr${id}`;
  const subnet = `10.214.${randomBytes(1)[0]!}`;
  const nodes = Array.from({ length: count }, (_, i) => ({
    ns: `coffre-${id}-${i}`,
    addr: `${subnet}.${10 + i}`,
  }));
  const made: string[] = [];
  t.after(() => {
    for (const ns of made) {
      try {
        ip('netns', 'del', ns);
      } catch {
        /* already gone */
      }
    }
    try {
      ip('link', 'del', bridge);
    } catch {
      /* not made */
    }
  });
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    nodes.forEach(({ ns, addr }, i) => {
      ip('netns', 'add', ns);
      made.push(ns);
      const [outside, inside] = [`cf${id}${i}h`, `cf${id}${i}n`];
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      ip('link', 'set', inside, 'netns', ns);
      ip('link', 'set', outside, 'master', bridge, 'up');
      ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', inside);
      ip('netns', 'exec', ns, 'ip', 'link', 'set', inside, 'up');
      ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
    });
  } catch (err) {
    t.diagnostic(`cannot set up the bridged namespaces: ${String(err)}`);
    return undefined;
  }
  // Blackhole routes: a packet to a cut peer is dropped where it is sent, so neither side hears the other.
  let cuts: [string, string][] = [];
  return {
    hostAddr: `${subnet}.1`,
    nodes,
    isolate(side) {
      for (const i of side)
        for (let j = 0; j < count; j++) {
          if (side.includes(j)) continue;
          for (const [from, to] of [
            [i, j],
            [j, i],
          ] as const) {
            ip('netns', 'exec', nodes[from]!.ns, 'ip', 'route', 'add', 'blackhole', `${nodes[to]!.addr}/32`);
            cuts.push([nodes[from]!.ns, nodes[to]!.addr]);
          }
        }
    },
    heal() {
      for (const [ns, addr] of cuts) ip('netns', 'exec', ns, 'ip', 'route', 'del', 'blackhole', `${addr}/32`);
      cuts = [];
    },
  };
}
