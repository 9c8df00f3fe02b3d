// cli/lifecycle: `coffre lifecycle run` — apply the buckets' lifecycle rules now (the node also does it daily),
// or as of another date, and print what was removed.
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { adminCall, adminTarget, print } from './admin-client.js';
import type { LifecycleReport } from '../model/lifecycle.js';

function describeReport(r: LifecycleReport): string {
  const lines = [
    `Lifecycle applied as of ${r.now} to ${r.buckets} bucket(s):`,
    `  expired: ${r.expired}`,
    `  non-current versions removed: ${r.noncurrentRemoved}`,
    `  delete markers removed: ${r.deleteMarkersRemoved}`,
    `  uploads aborted: ${r.uploadsAborted}`,
    `  kept by object lock: ${r.keptByObjectLock}`,
  ];
  for (const a of r.actions)
    lines.push(
      `  ${a.action}  ${a.bucket}/${a.key}${a.versionId ? ` (version ${a.versionId})` : ''}  rule ${a.rule}`,
    );
  if (r.truncated) lines.push('  … (more; see the counts)');
  return lines.join('\n');
}

export function registerLifecycleCommands(program: Command): void {
  const lifecycle = program.command('lifecycle').description('apply bucket lifecycle rules');
  lifecycle
    .command('run')
    .description('apply every bucket lifecycle rule now and report what was removed')
    .option('--now <date>', 'apply the rules as of this date (object lock still counts the real time)')
    .option('--json', 'print JSON')
    .action(async (opts: { now?: string; json?: boolean }, cmd: Command) => {
      if (opts.now !== undefined && Number.isNaN(Date.parse(opts.now)))
        throw new UserError(`--now ${opts.now}: give a date, as 2030-01-31 or 2030-01-31T12:00:00Z`);
      const report = (await adminCall(adminTarget(cmd), 'POST', '/v1/lifecycle/run', {
        ...(opts.now !== undefined ? { now: opts.now } : {}),
      })) as LifecycleReport;
      print(report, Boolean(opts.json), describeReport);
    });
}
