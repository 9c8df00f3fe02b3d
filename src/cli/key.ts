// cli/key: `coffre key create|list|info|delete|allow|deny` — S3 access keys.
import type { Command } from 'commander';
import { adminCall, adminTarget, print } from './admin-client.js';

interface KeyInfo {
  accessKeyId: string;
  name: string;
  secretAccessKey?: string;
  createdAt: string;
  allowCreateBucket: boolean;
  buckets: { name: string; read: boolean; write: boolean; owner: boolean }[];
}

function perms(p: { read: boolean; write: boolean; owner: boolean }): string {
  return [p.read ? 'R' : '-', p.write ? 'W' : '-', p.owner ? 'O' : '-'].join('');
}

function describeKey(k: KeyInfo): string {
  const lines = [`Key name: ${k.name}`, `Key ID: ${k.accessKeyId}`];
  if (k.secretAccessKey) lines.push(`Secret key: ${k.secretAccessKey}`);
  lines.push(`Created: ${k.createdAt}`, `Can create buckets: ${k.allowCreateBucket}`);
  if (k.buckets.length) {
    lines.push('Buckets:');
    for (const b of k.buckets) lines.push(`  ${perms(b)}  ${b.name}`);
  }
  return lines.join('\n');
}

export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('manage S3 access keys');
  key
    .command('create <name>')
    .description('create an access key (prints its secret once)')
    .option('--create-bucket', 'allow this key to create buckets through S3')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { createBucket?: boolean; json?: boolean }, cmd: Command) => {
      const k = (await adminCall(adminTarget(cmd), 'POST', '/v1/keys', {
        name,
        allowCreateBucket: Boolean(opts.createBucket),
      })) as KeyInfo;
      print(
        opts.json ? { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey, name: k.name } : k,
        Boolean(opts.json),
        describeKey,
      );
    });
  key
    .command('list')
    .description('list access keys')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const keys = (await adminCall(adminTarget(cmd), 'GET', '/v1/keys')) as {
        accessKeyId: string;
        name: string;
      }[];
      print(keys, Boolean(opts.json), (ks: typeof keys) =>
        ks.length ? ks.map((k) => `${k.accessKeyId}  ${k.name}`).join('\n') : 'no keys',
      );
    });
  key
    .command('info <key>')
    .description('show an access key (by id or name) and its bucket permissions')
    .option('--show-secret', 'also print the secret key')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean; showSecret?: boolean }, cmd: Command) => {
      const target = adminTarget(cmd);
      let k = (await adminCall(target, 'GET', `/v1/keys/${encodeURIComponent(id)}`)) as KeyInfo;
      if (!opts.showSecret) k = { ...k, secretAccessKey: undefined };
      print(k, Boolean(opts.json), describeKey);
    });
  key
    .command('delete <key>')
    .description('delete an access key (by id or name)')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const r = (await adminCall(adminTarget(cmd), 'DELETE', `/v1/keys/${encodeURIComponent(id)}`)) as {
        deleted: string;
      };
      print(r, Boolean(opts.json), (d: typeof r) => `deleted key ${d.deleted}`);
    });
  for (const [verb, allowed] of [
    ['allow', true],
    ['deny', false],
  ] as const) {
    key
      .command(`${verb} <key>`)
      .description(`${verb} a key to create buckets`)
      .requiredOption('--create-bucket', 'the permission to create buckets')
      .option('--json', 'print JSON')
      .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
        const k = (await adminCall(adminTarget(cmd), 'PATCH', `/v1/keys/${encodeURIComponent(id)}`, {
          allowCreateBucket: allowed,
        })) as KeyInfo;
        print(k, Boolean(opts.json), describeKey);
      });
  }
}
