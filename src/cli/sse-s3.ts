// cli/sse-s3: `coffre sse-s3 init|status|unlock|lock|rotate|reseal|rewrap|drop-key` — the node's SSE-S3 keyring. Master keys are
// sealed to operators' OpenPGP keys; `unlock` opens the sealed keyring here, with the operator's private key
// file or their GnuPG, and hands the master keys to the node (over TLS or loopback), so no private key ever
// reaches the server. Before it sends anything, it checks the keyring against those it has unlocked or created
// before (cli/known-keyrings.ts), so that a master key planted in the node's keyring file is not handed over.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { gpgDecrypt, loadPublicKeys } from '../crypt/keys.js';
import { Keyring, MAX_OPENED_ENTRY_BYTES, type KeyringSummary } from '../sse/keyring.js';
import { sealedDigest, type SseS3Status } from '../sse/sse-s3-keys.js';
import { UserError, errorMessage } from '../util/errors.js';
import { adminCall, adminTarget, print, type AdminTarget } from './admin-client.js';
import {
  checkBeforeUnlock,
  loadKnownKeyrings,
  parseAcceptance,
  remember,
  rememberAfter,
  saveKnownKeyrings,
} from './known-keyrings.js';

/** How this CLI names a node in its known keyrings: the admin endpoint it talks to. */
function nodeName(target: AdminTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `${target.ca ? 'https' : 'http'}://${host}:${target.port}`;
}

function summaryOf(s: SseS3Status): KeyringSummary | undefined {
  if (s.current === undefined || s.keys === undefined || s.v === undefined) return undefined;
  return { v: s.v, keyring: s.keyring, current: s.current, keys: s.keys };
}

function describe(s: SseS3Status): string {
  if (!s.configured)
    return `SSE-S3: not set up (no keyring at ${s.keyringFile}; create one with \`coffre sse-s3 init\`)`;
  const lines = [
    `SSE-S3: ${s.unlocked ? 'unlocked' : 'LOCKED (run `coffre sse-s3 unlock`)'}  keyring ${s.keyringFile}`,
    s.damaged
      ? `  ${s.damaged}`
      : s.keyring
        ? `  keyring id ${s.keyring}`
        : '  keyring format 1, without an id (upgrade it with `coffre sse-s3 reseal`)',
  ];
  for (const k of s.keys ?? [])
    lines.push(
      `  ${k.id}${k.id === s.current ? ' (current)' : '          '}  ${k.created}  sealed to ${k.recipients.map((r) => (s.userIds?.[r] ? `${r} (${s.userIds[r]})` : r)).join(', ')}`,
    );
  return lines.join('\n');
}

const REWRAP_POLL_MS = 1_000;

/** A rewrap pass as the admin API shows it ({} when none ever ran). */
interface RewrapView {
  target?: string;
  state?: 'waiting' | 'running' | 'done' | 'failed';
  seen?: number;
  rewrapped?: number;
  current?: number;
  other?: number;
  legacy?: number;
  failed?: number;
  uploads?: number;
  cursor?: string;
  waitingFor?: string[];
  error?: string;
}

function describeRewrap(p: RewrapView): string {
  if (!p.state) return 'rewrap: no pass has run (start one with `coffre sse-s3 rewrap`)';
  const counts = `${p.seen ?? 0} objects seen, ${p.rewrapped ?? 0} re-wrapped (${p.legacy ?? 0} of them written before keys were wrapped), ${p.current ?? 0} already under it, ${p.failed ?? 0} failed`;
  if (p.state === 'waiting')
    return `rewrap to key ${p.target}: waiting for gateways ${(p.waitingFor ?? []).join(', ')} to take the key`;
  if (p.state === 'running') return `rewrap to key ${p.target}: running, ${counts}`;
  if (p.state === 'failed')
    return `rewrap to key ${p.target}: stopped (${p.error ?? 'unknown error'}) after ${counts}; run \`coffre sse-s3 rewrap\` again to resume`;
  const uploads = p.uploads ? `; ${p.uploads} multipart uploads in progress still use an older key` : '';
  return `rewrap to key ${p.target}: done, ${counts}${uploads}`;
}

async function armoredPublicKeys(specs: string[] | undefined): Promise<string[]> {
  if (!specs?.length) throw new UserError('name at least one operator key: --recipient FILE|KEYID');
  return (await loadPublicKeys(specs)).map((k) => k.armor());
}

export function registerSseS3Commands(program: Command): void {
  const sse = program
    .command('sse-s3')
    .description("SSE-S3: the node's master keys, sealed to operators' OpenPGP keys");
  const withRecipients = (name: string, description: string, action: 'init' | 'rotate' | 'reseal') =>
    sse
      .command(name)
      .description(description)
      .requiredOption(
        '--recipient <file|keyid...>',
        "an operator's OpenPGP public key (file, or key id in GnuPG)",
      )
      .option('--json', 'print JSON')
      .action(async (opts: { recipient: string[]; json?: boolean }, cmd: Command) => {
        const target = adminTarget(cmd);
        const known = loadKnownKeyrings();
        const status = (await adminCall(target, 'POST', `/v1/sse-s3/${action}`, {
          publicKeys: await armoredPublicKeys(opts.recipient),
        })) as SseS3Status;
        // The node answers with the keyring it now holds in memory: keys it made, or an operator unlocked.
        const summary = summaryOf(status);
        if (summary) {
          const warning = rememberAfter(known, nodeName(target), action, summary);
          if (warning) process.stderr.write(warning + '\n');
          else saveKnownKeyrings(known);
        }
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
    .description(
      "open the node's keyring with your private key (file, or GnuPG) and hand it the master keys, if they are keys unlocked or created from here before",
    )
    .option(
      '--private-key <file>',
      'your OpenPGP private key, armored (passphrase from COFFRE_SSE_S3_PASSPHRASE)',
    )
    .option('--gpg', 'ask your GnuPG to open the keyring (gpg-agent asks for a passphrase if needed)')
    .option('--accept-new-key <id...>', 'hand over this master key although it is new to this machine')
    .option('--accept-new-keyring <id>', 'unlock this keyring although the node had another before')
    .option(
      '--accept-dropped-key <id...>',
      'unlock although this master key, known here, is gone (an operator dropped it after a rewrap)',
    )
    .option('--json', 'print JSON')
    .action(
      async (
        opts: {
          privateKey?: string;
          gpg?: boolean;
          acceptNewKey?: string[];
          acceptNewKeyring?: string;
          acceptDroppedKey?: string[];
          json?: boolean;
        },
        cmd: Command,
      ) => {
        if (Boolean(opts.privateKey) === Boolean(opts.gpg))
          throw new UserError('say how to open the keyring: --private-key FILE or --gpg');
        const accept = parseAcceptance(opts.acceptNewKeyring, opts.acceptNewKey, opts.acceptDroppedKey);
        const target = adminTarget(cmd);
        const known = loadKnownKeyrings();
        const { sealed } = (await adminCall(target, 'GET', '/v1/sse-s3')) as { sealed?: string };
        if (!sealed)
          throw new UserError('no SSE-S3 keyring on this node (create one with `coffre sse-s3 init`)');
        // Opening checks the file itself: every entry sealed for its place in this keyring, and the MAC.
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
            const plain = await gpgDecrypt(Buffer.from(message), MAX_OPENED_ENTRY_BYTES);
            if (!plain) throw new Error('gpg cannot decrypt');
            return plain;
          });
        }
        const summary = keyring.summary();
        const node = nodeName(target);
        let keys: Map<string, Buffer>;
        try {
          // What the file cannot tell: a keyring, or a key, this operator has never seen.
          const firstUse = checkBeforeUnlock(known, node, summary, accept);
          if (firstUse) process.stderr.write(firstUse + '\n');
          if (summary.keyring === undefined)
            process.stderr.write(
              'warning: this SSE-S3 keyring is in format 1, whose entries are not bound together: upgrade it with `coffre sse-s3 reseal --recipient …`\n',
            );
          keys = keyring.masterKeys();
        } finally {
          keyring.lock();
        }
        const body = {
          sealedDigest: sealedDigest(sealed),
          keys: Object.fromEntries([...keys].map(([id, k]) => [id, k.toString('base64')])),
        };
        for (const k of keys.values()) k.fill(0);
        const status = (await adminCall(target, 'POST', '/v1/sse-s3/unlock', body)) as SseS3Status;
        remember(known, node, summary, accept.dropped);
        saveKnownKeyrings(known);
        print(status, Boolean(opts.json), describe);
      },
    );
  sse
    .command('rewrap')
    .description(
      "re-wrap every SSE-S3 object's key under the current master key (gateways in front of a backend; the backend copies each object onto itself, no data passes through the gateway); resumes a pass cut short",
    )
    .option('--status', 'only show the progress of the last pass')
    .option('--no-wait', 'start (or resume) the pass and return')
    .option('--json', 'print JSON')
    .action(async (opts: { status?: boolean; wait: boolean; json?: boolean }, cmd: Command) => {
      const target = adminTarget(cmd);
      let progress = (await adminCall(
        target,
        opts.status ? 'GET' : 'POST',
        '/v1/sse-s3/rewrap',
        opts.status ? undefined : {},
      )) as RewrapView;
      while (!opts.status && opts.wait && (progress.state === 'waiting' || progress.state === 'running')) {
        if (!opts.json) process.stderr.write(describeRewrap(progress) + '\n');
        await new Promise((r) => setTimeout(r, REWRAP_POLL_MS));
        progress = (await adminCall(target, 'GET', '/v1/sse-s3/rewrap')) as RewrapView;
      }
      print(progress, Boolean(opts.json), describeRewrap);
      if (progress.state === 'failed') process.exitCode = 1;
    });
  sse
    .command('drop-key <id>')
    .description(
      'remove an older master key for good, once `coffre sse-s3 rewrap` has moved every object off it; the other keys are sealed anew to the operators named',
    )
    .requiredOption(
      '--recipient <file|keyid...>',
      "an operator's OpenPGP public key (file, or key id in GnuPG)",
    )
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { recipient: string[]; json?: boolean }, cmd: Command) => {
      if (!/^[0-9a-f]{16}$/.test(id))
        throw new UserError(
          `${id} is not a master key id (16 hex digits, as \`coffre sse-s3 status\` lists)`,
        );
      const target = adminTarget(cmd);
      const known = loadKnownKeyrings();
      const status = (await adminCall(target, 'POST', '/v1/sse-s3/drop', {
        keyId: id,
        publicKeys: await armoredPublicKeys(opts.recipient),
      })) as SseS3Status;
      const summary = summaryOf(status);
      if (summary) {
        const warning = rememberAfter(known, nodeName(target), 'reseal', summary);
        if (warning) process.stderr.write(warning + '\n');
        else {
          remember(known, nodeName(target), summary, [id]);
          saveKnownKeyrings(known);
        }
      }
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
