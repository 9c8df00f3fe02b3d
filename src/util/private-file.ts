// util/private-file: the one check that a file holding a secret (a node key, a config with tokens, an unlock
// key) is not open to other users, with the same refusal everywhere: what, where, the mode, and the fix.
import { statSync } from 'node:fs';
import { UserError } from './errors.js';

/** Bits that let group or others read, write or run a file: a secret's file has none of them. */
export const OPEN_TO_OTHERS = 0o077;
/** Bits that let group or others write a file: a file that decides what is trusted has none of them. */
export const WRITABLE_BY_OTHERS = 0o022;

export interface PrivateFileOptions {
  /** Which bits refuse the file (OPEN_TO_OTHERS unless said). */
  bits?: number;
  /** How an operator may allow it anyway, said after the chmod (e.g. "set allow_world_readable_secrets = true"). */
  howToAllow?: string;
  /** The mode read already (with the file's content, so that both come from one look at it). */
  mode?: number;
}

/** The file's permission bits (0o777 part of its mode). */
export function fileMode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Throws a one-line UserError when `path` has any of `bits` set. Windows has no such bits: nothing is checked. */
export function requirePrivateFile(what: string, path: string, opts: PrivateFileOptions = {}): void {
  if (process.platform === 'win32') return;
  const bits = opts.bits ?? OPEN_TO_OTHERS;
  const mode = opts.mode ?? fileMode(path);
  if ((mode & bits) === 0) return;
  const open = bits === WRITABLE_BY_OTHERS ? 'writable' : 'readable';
  throw new UserError(
    `${what} is ${open} by other users (mode ${mode.toString(8).padStart(4, '0')}); run \`chmod 600 ${path}\`` +
      (opts.howToAllow ? `, or ${opts.howToAllow}` : ''),
  );
}
