// bench/lib/node-flags: benchmarks that run coffre's code in their own process run it under the node flags the
// `coffre` command starts node with (bin/coffre.js), so that their figures are those of a running node. Started
// without them, the benchmark runs itself again with them and exits with that run's status.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { COFFRE_NODE_FLAGS } from '../../test/helpers/server.js';

/** True when this process already runs under the flags; otherwise re-runs `moduleUrl` with them and exits. */
export function underCoffreNodeFlags(moduleUrl: string): true {
  if (COFFRE_NODE_FLAGS.every((f) => process.execArgv.includes(f))) return true;
  const script = fileURLToPath(moduleUrl);
  const run = spawnSync(
    process.execPath,
    [...process.execArgv, ...COFFRE_NODE_FLAGS, script, ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  process.exit(run.status ?? 1);
}
