// cli/layout: `coffre layout assign|remove|show|apply` — the cluster layout (storage nodes with zone and
// capacity, gateway nodes), changed in staged steps and applied as a new version.
import type { Command } from 'commander';
import type { ClusterLayout } from '../rpc/layout.js';
import { metadataNode, parseCapacity } from '../rpc/layout.js';
import { UserError } from '../util/errors.js';
import { adminCall, adminTarget, print } from './admin-client.js';
import { formatBytes } from './node.js';

function describeLayout(l: ClusterLayout & { metadataCopies?: string[] }): string {
  const lines = [`Layout version ${l.version}`];
  const roles = Object.entries(l.roles);
  if (roles.length === 0) lines.push('  no roles: this node stands alone');
  const metadata = metadataNode(l);
  for (const [id, r] of roles)
    lines.push(
      `  ${id.slice(0, 16)}  ${r.capacity === null ? 'gateway' : 'storage'}  zone ${r.zone}  ${formatBytes(r.capacity)}` +
        (id === metadata ? '  (metadata)' : l.metadataCopies?.includes(id) ? '  (metadata copy)' : ''),
    );
  const staged = Object.entries(l.staged);
  if (staged.length) {
    lines.push('Staged changes (apply with `coffre layout apply --version ' + (l.version + 1) + '`):');
    for (const [id, r] of staged) {
      lines.push(
        r === null
          ? `  ${id.slice(0, 16)}  remove`
          : `  ${id.slice(0, 16)}  ${r.capacity === null ? 'gateway' : 'storage'}  zone ${r.zone}  ${formatBytes(r.capacity)}`,
      );
    }
  }
  return lines.join('\n');
}

export function registerLayoutCommands(program: Command): void {
  const layout = program
    .command('layout')
    .description('the cluster layout: which nodes store data, which are gateways');
  layout
    .command('assign <node>')
    .description('stage a role for a node (id or unique id prefix)')
    .option('-z, --zone <zone>', 'zone (data is spread over zones first)')
    .option('-c, --capacity <size>', 'storage capacity, e.g. 100G or 1T')
    .option('-g, --gateway', 'a gateway: serves the API, stores nothing')
    .option('--json', 'print JSON')
    .action(
      async (
        nodeId: string,
        opts: { zone?: string; capacity?: string; gateway?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        if (Boolean(opts.gateway) === Boolean(opts.capacity))
          throw new UserError('give either --capacity SIZE or --gateway');
        const body = {
          nodeId,
          zone: opts.zone,
          gateway: Boolean(opts.gateway),
          ...(opts.capacity ? { capacity: parseCapacity(opts.capacity) } : {}),
        };
        print(
          await adminCall(adminTarget(cmd), 'POST', '/v1/layout/assign', body),
          Boolean(opts.json),
          describeLayout,
        );
      },
    );
  layout
    .command('remove <node>')
    .description("stage the removal of a node's role")
    .option('--json', 'print JSON')
    .action(async (nodeId: string, opts: { json?: boolean }, cmd: Command) => {
      print(
        await adminCall(adminTarget(cmd), 'POST', '/v1/layout/remove', { nodeId }),
        Boolean(opts.json),
        describeLayout,
      );
    });
  layout
    .command('show')
    .description('the current layout and staged changes')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      print(await adminCall(adminTarget(cmd), 'GET', '/v1/layout'), Boolean(opts.json), describeLayout);
    });
  layout
    .command('apply')
    .description('apply the staged changes as the next layout version and send it to every node')
    .requiredOption('--version <n>', 'the new version number (current + 1)')
    .option('--json', 'print JSON')
    .action(async (opts: { version: string; json?: boolean }, cmd: Command) => {
      if (!/^\d+$/.test(opts.version)) throw new UserError('--version must be a number');
      print(
        await adminCall(adminTarget(cmd), 'POST', '/v1/layout/apply', { version: Number(opts.version) }),
        Boolean(opts.json),
        describeLayout,
      );
    });
}
