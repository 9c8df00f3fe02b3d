// Test helper: what the backend lease (src/backend/lease.ts) must do on any backend, checked against one by
// the tests of each backend (a coffre node, Ceph RGW): of two holders at the same moment one runs; a holder
// whose renewal is refused has its job aborted; a live holder is named, an expired lease is taken.
import assert from 'node:assert/strict';
import { BackendLease } from '../../src/backend/lease.js';
import type { SharedRecords } from '../../src/backend/records.js';

// A wait with a deadline: it also keeps the test's event loop alive (the lease's renewal timer does not).
async function within<T>(what: string, wait: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([wait, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the checks on the lease `lease-race`; `overwrite` writes other bytes over its record in the backend. */
export async function checkLease(
  records: SharedRecords,
  overwrite: (name: string) => Promise<unknown>,
): Promise<void> {
  const name = 'lease-race';
  const one = new BackendLease(records, { name, holder: 'one', ttlMs: 10_000 });
  const two = new BackendLease(records, { name, holder: 'two', ttlMs: 10_000 });
  // Each job waits until the other holder was refused: were both let in, neither would ever end.
  let refused!: () => void;
  const otherRefused = new Promise<void>((r) => (refused = r));
  const job = async () => {
    await otherRefused;
    return 'done';
  };
  const outcomes = await within(
    'one of two holders refused (both let in?)',
    Promise.all(
      [one, two].map((lease) =>
        lease.run(job).then((o) => {
          if (!o.ran) refused();
          return o;
        }),
      ),
    ),
  );
  assert.equal(outcomes.filter((o) => o.ran).length, 1, JSON.stringify(outcomes));
  // Released: the other takes it at once.
  const loser = outcomes[0]!.ran ? two : one;
  assert.deepEqual(await loser.run(async () => 'after'), { ran: true, value: 'after' });

  // A holder whose renewal is refused (the record changed under it) has its job aborted.
  const short = new BackendLease(records, { name, holder: 'short', ttlMs: 900 });
  const lost = await short.run(async (signal) => {
    await overwrite(name);
    await within(
      'the job aborted once its renewal is refused',
      new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true })),
    );
    return (signal.reason as Error).message;
  });
  assert.ok(lost.ran && /lease was lost/.test(lost.value), JSON.stringify(lost));

  // A live holder's lease is refused, naming it; one whose expiry is long past is taken.
  const now = Date.now();
  const held = { v: 1, holder: 'alive', token: 't', expiresAt: now + 60_000, ttlMs: 60_000 };
  await records.writeState('leases', name, held);
  assert.deepEqual(await one.run(async () => 'no'), { ran: false, holder: 'alive' });
  const stale = { v: 1, holder: 'dead', token: 't', expiresAt: now - 10_000, ttlMs: 1_000 };
  await records.writeState('leases', name, stale);
  assert.deepEqual(await one.run(async () => 'yes'), { ran: true, value: 'yes' });
}
