// cli/sse-s3: `coffre sse-s3 init|status|unlock|lock|rotate|reseal` — the node's SSE-S3 keyring. Master keys are
// sealed to operators' OpenPGP keys; `unlock` opens the sealed keyring here, with the operator's private key
// file or their GnuPG, and hands the master keys to the node (over TLS or loopback), so no private key ever
// reaches the server.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { gpgDecrypt, loadPublicKeys } from '../crypt/keys.js';
import { Keyring } from '../sse/keyring.js';
import type { SseS3Status } from '../sse/sse-s3-keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { adminCall, adminTarget, print } from './admin-client.js';

function describe(s: SseS3Status): string {
  if (!s.configured)
    return `SSE-S3: not set up (no keyring at ${s.keyringFile}; create one with \`coffre sse-s3 init\`)`;
  const lines = [
    `SSE-S3: ${s.unlocked ? 'unlocked' : 'LOCKED (run `coffre sse-s3 unlock`)'}  keyring ${s.keyringFile}`,
  ];
  for (const k of s.keys ?? [])
    lines.push(
      `  ${k.id}${k.id === s.current ? ' (current)' : '          '}  ${k.created}  sealed to ${k.recipients.join(', ')}`,
    );
  return lines.join('\n');
}

async function armoredPublicKeys(specs: string[] | undefined): Promise<string[]> {
  if (!specs?.length) throw new UserError('name at least one operator key: --recipient FILE|KEYID');
  return (await loadPublicKeys(specs)).map((k) => k.armor());
}

export function registerSseS3Commands(program: Command): void {
  const sse = program
    .command('sse-s3')
    .description("SSE-S3: the node's master keys, sealed to operators' OpenPGP keys");
  const withRecipients = (name: string, description: string, action: string) =>
    sse
      .command(name)
      .description(description)
      .requiredOption(
        '--recipient <file|keyid...>',
        "an operator's OpenPGP public key (file, or key id in GnuPG)",
      )
      .option('--json', 'print JSON')
      .action(async (opts: { recipient: string[]; json?: boolean }, cmd: Command) => {
        const status = (await adminCall(adminTarget(cmd), 'POST', `/v1/sse-s3/${action}`, {
          publicKeys: await armoredPublicKeys(opts.recipient),
        })) as SseS3Status;
        print(status, Boolean(opts.json), describe);
      });
  withRecipients('init', 'create the keyring: a first master key sealed to the operators named', 'init');
  withRecipients('rotate', 'add a master key for new objects (older ones stay, for reading)', 'rotate');
  withRecipients(
    'reseal',
    'seal every master key to exactly the operators named (to add or remove one)',
    'reseal',
  );
  sse
    .command('status')
    .description('whether SSE-S3 is set up and unlocked on this node, and its master keys')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { sealed: _sealed, ...status } = (await adminCall(
        adminTarget(cmd),
        'GET',
        '/v1/sse-s3',
      )) as SseS3Status & {
        sealed?: string;
      };
      print(status, Boolean(opts.json), describe);
    });
  sse
    .command('unlock')
    .description("open the node's keyring with your private key (file, or GnuPG) and hand it the master keys")
    .option(
      '--private-key <file>',
      'your OpenPGP private key, armored (passphrase from COFFRE_SSE_S3_PASSPHRASE)',
    )
    .option('--gpg', 'ask your GnuPG to open the keyring (gpg-agent asks for a passphrase if needed)')
    .option('--json', 'print JSON')
    .action(async (opts: { privateKey?: string; gpg?: boolean; json?: boolean }, cmd: Command) => {
      if (Boolean(opts.privateKey) === Boolean(opts.gpg))
        throw new UserError('say how to open the keyring: --private-key FILE or --gpg');
      const target = adminTarget(cmd);
      const { sealed } = (await adminCall(target, 'GET', '/v1/sse-s3')) as { sealed?: string };
      if (!sealed)
        throw new UserError('no SSE-S3 keyring on this node (create one with `coffre sse-s3 init`)');
      let keyring: Keyring;
      if (opts.privateKey) {
        let armored: string;
        try {
          armored = readFileSync(opts.privateKey, 'utf8');
        } catch (err) {
          throw new UserError(`cannot read ${opts.privateKey}: ${errorMessage(err)}`);
        }
        keyring = await Keyring.unlock(sealed, armored, process.env.COFFRE_SSE_S3_PASSPHRASE);
      } else {
        keyring = await Keyring.open(sealed, async (message) => {
          const plain = await gpgDecrypt(Buffer.from(message));
          if (!plain) throw new Error('gpg cannot decrypt');
          return plain;
        });
      }
      const keys = keyring.masterKeys();
      keyring.lock();
      const body = { keys: Object.fromEntries([...keys].map(([id, k]) => [id, k.toString('base64')])) };
      for (const k of keys.values()) k.fill(0);
      const status = (await adminCall(target, 'POST', '/v1/sse-s3/unlock', body)) as SseS3Status;
      print(status, Boolean(opts.json), describe);
    });
  sse
    .command('lock')
    .description('forget the master keys in memory (SSE-S3 requests wait for the next unlock)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      print(
        (await adminCall(adminTarget(cmd), 'POST', '/v1/sse-s3/lock', {})) as SseS3Status,
        Boolean(opts.json),
        describe,
      );
    });
}
