// cli/bucket: `coffre bucket create|list|info|delete|allow|deny` — buckets and per-key permissions.
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { adminCall, adminTarget, print } from './admin-client.js';

interface BucketInfo {
  name: string;
  id: string;
  createdAt: string;
  objects: number;
  bytes: number;
  keys: { accessKeyId: string; name?: string; read: boolean; write: boolean; owner: boolean }[];
}

function describeBucket(b: BucketInfo): string {
  const lines = [
    `Bucket: ${b.name}`,
    `ID: ${b.id}`,
    `Created: ${b.createdAt}`,
    `Objects: ${b.objects}`,
    `Size: ${b.bytes} bytes`,
  ];
  if (b.keys.length) {
    lines.push('Keys:');
    for (const k of b.keys)
      lines.push(
        `  ${k.read ? 'R' : '-'}${k.write ? 'W' : '-'}${k.owner ? 'O' : '-'}  ${k.accessKeyId}  ${k.name ?? ''}`,
      );
  }
  return lines.join('\n');
}

export function registerBucketCommands(program: Command): void {
  const bucket = program.command('bucket').description('manage buckets and their permissions');
  bucket
    .command('create <name>')
    .description('create a bucket')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      print(
        await adminCall(adminTarget(cmd), 'POST', '/v1/buckets', { name }),
        Boolean(opts.json),
        describeBucket,
      );
    });
  bucket
    .command('list')
    .description('list buckets')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const list = (await adminCall(adminTarget(cmd), 'GET', '/v1/buckets')) as {
        name: string;
        id: string;
        createdAt: string;
      }[];
      print(list, Boolean(opts.json), (l: typeof list) =>
        l.length ? l.map((b) => `${b.name}  ${b.createdAt}`).join('\n') : 'no buckets',
      );
    });
  bucket
    .command('info <name>')
    .description('show a bucket, its size and the keys allowed on it')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      print(
        await adminCall(adminTarget(cmd), 'GET', `/v1/buckets/${encodeURIComponent(name)}`),
        Boolean(opts.json),
        describeBucket,
      );
    });
  bucket
    .command('delete <name>')
    .description('delete an empty bucket')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const r = (await adminCall(adminTarget(cmd), 'DELETE', `/v1/buckets/${encodeURIComponent(name)}`)) as {
        deleted: string;
      };
      print(r, Boolean(opts.json), (d: typeof r) => `deleted bucket ${d.deleted}`);
    });
  for (const verb of ['allow', 'deny'] as const) {
    bucket
      .command(`${verb} <name>`)
      .description(`${verb} a key read, write and/or owner access to a bucket`)
      .requiredOption('--key <id>', 'access key id or name')
      .option('--read', 'read objects and list')
      .option('--write', 'write and delete objects')
      .option('--owner', 'configure and delete the bucket')
      .option('--json', 'print JSON')
      .action(
        async (
          name: string,
          opts: { key: string; read?: boolean; write?: boolean; owner?: boolean; json?: boolean },
          cmd: Command,
        ) => {
          if (!opts.read && !opts.write && !opts.owner)
            throw new UserError(`say which permission to ${verb}: --read, --write and/or --owner`);
          const b = await adminCall(
            adminTarget(cmd),
            'POST',
            `/v1/buckets/${encodeURIComponent(name)}/${verb}`,
            {
              accessKeyId: opts.key,
              read: Boolean(opts.read),
              write: Boolean(opts.write),
              owner: Boolean(opts.owner),
            },
          );
          print(b, Boolean(opts.json), describeBucket);
        },
      );
  }
}
