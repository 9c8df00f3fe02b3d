// Test helper: a network namespace behind a veth pair, so a test can have a peer that is not on loopback
// without any traffic leaving the machine. Needs root; tests skip when it cannot be made.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';

export interface Namespace {
  name: string;
  hostAddr: string;
  peerAddr: string;
}

export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

export function makeNamespace(t: TestContext): Namespace | undefined {
  const id = randomBytes(3).toString('hex');
  const name = `coffre-${id}`;
  const [a, b] = [`cf${id}a`, `cf${id}b`];
  const subnet = `10.213.${randomBytes(1)[0]!}`;
  const ns: Namespace = { name, hostAddr: `${subnet}.1`, peerAddr: `${subnet}.2` };
  try {
    ip('netns', 'add', name);
  } catch (err) {
    t.diagnostic(`cannot create a network namespace: ${String(err)}`);
    return undefined;
  }
  t.after(() => {
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
  });
  try {
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    ip('link', 'set', b, 'netns', name);
    ip('addr', 'add', `${ns.hostAddr}/30`, 'dev', a);
    ip('link', 'set', a, 'up');
    ip('netns', 'exec', name, 'ip', 'addr', 'add', `${ns.peerAddr}/30`, 'dev', b);
    ip('netns', 'exec', name, 'ip', 'link', 'set', b, 'up');
  } catch (err) {
    t.diagnostic(`cannot set up the veth pair: ${String(err)}`);
    return undefined;
  }
  return ns;
}
