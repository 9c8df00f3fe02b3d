// cli/known-keyrings: the SSE-S3 keyrings, and their master keys, that this operator has unlocked or created,
// by node — trust on first use, as ssh's known_hosts. A keyring file opens with the operator's private key
// whatever its writer put in it: someone who can write a node's metadata_dir can seal a master key of their
// own to the operator's *public* key. `coffre sse-s3 unlock` therefore hands a node only master keys it has
// seen before for that node's keyring, or that the operator accepts by name.
//
// The file is JSON, mode 0600, at $COFFRE_KNOWN_KEYRINGS, else $XDG_CONFIG_HOME/coffre/known-keyrings.json,
// else ~/.config/coffre/known-keyrings.json:
//   {"format":"coffre-known-keyrings","v":1,
//    "keyrings":{"<keyring id>":{"keys":["<key id>",…]}},
//    "nodes":{"<admin endpoint>":"<keyring id>"}}
// A version 1 keyring has no id; it is remembered as `format-1@<admin endpoint>`.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { KeyringSummary } from '../sse/keyring.js';
import { UserError, errorMessage } from '../util/errors.js';
import { WRITABLE_BY_OTHERS, fileMode, requirePrivateFile } from '../util/private-file.js';

// ---- Format constants. DO NOT CHANGE: known-keyrings files depend on them. ----
const FORMAT = 'coffre-known-keyrings';
const VERSION = 1;
// ---- end of format constants ----

const KEY_ID = /^[0-9a-f]{16}$/;
const KEYRING_ID = /^[0-9a-f]{32}$/;
const LEGACY_PREFIX = 'format-1@';

/** What this operator has unlocked or created: key ids by keyring id, and each node's keyring. */
export interface KnownKeyrings {
  path: string;
  keyrings: Map<string, Set<string>>;
  nodes: Map<string, string>;
}

/** Master keys and a keyring the operator accepts by name for this unlock (`--accept-new-key/-keyring`). */
export interface Acceptance {
  keyring?: string;
  keys: string[];
  /** Master keys an operator dropped (`coffre sse-s3 drop-key`, perhaps from another machine). */
  dropped?: string[];
}

export function knownKeyringsPath(): string {
  const env = process.env.COFFRE_KNOWN_KEYRINGS;
  if (env) return env;
  const config = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(config, 'coffre', 'known-keyrings.json');
}

function damaged(path: string, detail: string): UserError {
  return new UserError(`${path} is damaged (${detail}): fix or remove it (then every keyring is new again)`);
}

export function loadKnownKeyrings(path = knownKeyringsPath()): KnownKeyrings {
  const known: KnownKeyrings = { path, keyrings: new Map(), nodes: new Map() };
  if (!existsSync(path)) return known;
  let text: string;
  let mode: number;
  try {
    mode = fileMode(path);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${path}: ${errorMessage(err)}`);
  }
  // Whoever can write this file decides which master keys are handed to nodes.
  requirePrivateFile(path, path, { bits: WRITABLE_BY_OTHERS, mode });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw damaged(path, 'not valid JSON');
  }
  const f = value as Record<string, unknown> | null;
  if (f === null || typeof f !== 'object' || f.format !== FORMAT)
    throw damaged(path, 'not a known-keyrings file');
  if (f.v !== VERSION) throw damaged(path, `unsupported version ${String(f.v)}`);
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(f.keyrings) || !isObject(f.nodes)) throw damaged(path, 'no keyrings or nodes');
  for (const [id, entry] of Object.entries(f.keyrings)) {
    const keys = isObject(entry) ? entry.keys : undefined;
    if (!(KEYRING_ID.test(id) || id.startsWith(LEGACY_PREFIX)) || !Array.isArray(keys))
      throw damaged(path, `keyring ${id}`);
    if (!keys.every((k): k is string => typeof k === 'string' && KEY_ID.test(k)))
      throw damaged(path, `a key id of keyring ${id}`);
    known.keyrings.set(id, new Set(keys));
  }
  for (const [node, id] of Object.entries(f.nodes)) {
    if (typeof id !== 'string' || !known.keyrings.has(id)) throw damaged(path, `node ${node}`);
    known.nodes.set(node, id);
  }
  return known;
}

export function saveKnownKeyrings(known: KnownKeyrings): void {
  const file = {
    format: FORMAT,
    v: VERSION,
    keyrings: Object.fromEntries([...known.keyrings].map(([id, keys]) => [id, { keys: [...keys] }])),
    nodes: Object.fromEntries(known.nodes),
  };
  try {
    mkdirSync(dirname(known.path), { recursive: true, mode: 0o700 });
    const tmp = `${known.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, known.path);
  } catch (err) {
    throw new UserError(`cannot write ${known.path}: ${errorMessage(err)}`);
  }
}

/** The id a keyring is remembered under: its own, or (version 1, which has none) one made from the node. */
export function rememberedId(node: string, summary: KeyringSummary): string {
  return summary.keyring ?? `${LEGACY_PREFIX}${node}`;
}

/** Checks the id an operator typed after --accept-new-key / --accept-new-keyring. */
export function parseAcceptance(
  keyring: string | undefined,
  keys: string[] | undefined,
  dropped: string[] = [],
): Acceptance {
  for (const k of dropped)
    if (!KEY_ID.test(k)) throw new UserError(`--accept-dropped-key ${k}: a master key id is 16 hex digits`);
  if (keyring !== undefined && !KEYRING_ID.test(keyring))
    throw new UserError(
      `--accept-new-keyring ${keyring}: a keyring id is 32 hex digits (see \`coffre sse-s3 status\`)`,
    );
  for (const k of keys ?? [])
    if (!KEY_ID.test(k))
      throw new UserError(
        `--accept-new-key ${k}: a master key id is 16 hex digits (see \`coffre sse-s3 status\`)`,
      );
  return { keyring, keys: keys ?? [], dropped };
}

/**
 * Whether the master keys of `summary`, the keyring node `node` serves, may be handed to it. Throws, with
 * what to do, on a keyring other than the one this node had, or a master key never seen in this keyring;
 * returns a line to show when it trusts something for the first time (nothing remembered).
 */
export function checkBeforeUnlock(
  known: KnownKeyrings,
  node: string,
  summary: KeyringSummary,
  accept: Acceptance,
): string | undefined {
  const id = rememberedId(node, summary);
  const had = known.nodes.get(node);
  const ids = summary.keys.map((k) => k.id);
  const described = `master keys ${ids.join(', ')} (current ${summary.current})`;
  if (had !== undefined && had !== id && accept.keyring !== id) {
    throw new UserError(
      `node ${node} now has SSE-S3 keyring ${id}, not keyring ${had} that was unlocked from here before: its keyring file may have been replaced, so no key was sent; if you made this keyring, run again with --accept-new-keyring ${id}`,
    );
  }
  const seen = known.keyrings.get(id);
  if (seen === undefined) {
    if (had === undefined)
      return `first unlock of SSE-S3 keyring ${id} from here (node ${node}): trusting ${described}; compare them with \`coffre sse-s3 status\` where the keyring was made (remembered in ${known.path})`;
    // The operator named this keyring (accept.keyring === id above).
    return `accepting SSE-S3 keyring ${id} for node ${node}: trusting ${described}`;
  }
  for (const k of ids) {
    if (!seen.has(k) && !accept.keys.includes(k))
      throw new UserError(
        `SSE-S3 keyring ${id} on node ${node} holds master key ${k}, which was never unlocked or created from here: it may have been planted in the keyring file, so no key was sent; if an operator of yours made it (\`coffre sse-s3 rotate\` elsewhere), run again with --accept-new-key ${k}`,
      );
  }
  for (const k of seen) {
    if (!ids.includes(k) && !accept.dropped?.includes(k))
      throw new UserError(
        `SSE-S3 keyring ${id} on node ${node} lacks master key ${k}, which it held when unlocked from here before: objects under it could not be read; restore the keyring file from a backup; if an operator of yours dropped it (\`coffre sse-s3 drop-key\`, after a rewrap), run again with --accept-dropped-key ${k}`,
      );
  }
  return undefined;
}

/** Remembers that node `node` has keyring `summary` and every master key in it. */
export function remember(
  known: KnownKeyrings,
  node: string,
  summary: KeyringSummary,
  dropped: readonly string[] = [],
): void {
  const id = rememberedId(node, summary);
  const keys = known.keyrings.get(id) ?? new Set<string>();
  for (const k of summary.keys) keys.add(k.id);
  // A key dropped on purpose is no longer expected (its absence is no sign of a damaged keyring).
  for (const k of dropped) keys.delete(k);
  known.keyrings.set(id, keys);
  known.nodes.set(node, id);
}

/**
 * After `init`, `rotate` or `reseal`: the keyring the node now holds in memory is made of master keys an
 * operator unlocked or the node just made, so it is remembered — unless it is not the keyring this node had,
 * which only `init` (a new keyring) or `reseal` of a version 1 keyring (which gives it an id) may change.
 * Returns a warning line when it does not remember.
 */
export function rememberAfter(
  known: KnownKeyrings,
  node: string,
  action: 'init' | 'rotate' | 'reseal',
  summary: KeyringSummary,
): string | undefined {
  const id = rememberedId(node, summary);
  const had = known.nodes.get(node);
  const mayChange = action === 'init' || (action === 'reseal' && had?.startsWith(LEGACY_PREFIX));
  if (had !== undefined && had !== id && !mayChange)
    return `warning: node ${node} holds SSE-S3 keyring ${id}, not keyring ${had} that was unlocked from here before; not remembered: check how that node was unlocked`;
  remember(known, node, summary);
  return undefined;
}
