// crypt/annex-branch: reading and writing a git-annex repository's `git-annex` branch with plain git commands —
// remote.log, uuid.log, per-key location logs (`<hashdir>/<key>.log`) and chunk logs (`….log.cnk`).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { hashDirLower } from './names.js';

const BRANCH = 'refs/heads/git-annex';

export function git(repo: string, args: string[], input?: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-C', repo, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new UserError('git is not installed') : e),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else {
        const msg = Buffer.concat(err).toString('utf8').trim().split('\n')[0];
        reject(new UserError(`git ${args[0]} in ${repo} failed: ${msg}`));
      }
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** git-annex's journal file name for a branch path (uncommitted changes win over the branch). */
function journalName(path: string): string {
  return path.replace(/&/g, '&&').replace(/_/g, '&_').replace(/\//g, '_');
}

async function gitDir(repo: string): Promise<string> {
  return (await git(repo, ['rev-parse', '--absolute-git-dir'])).toString('utf8').trim();
}

export async function requireAnnexRepo(repo: string): Promise<void> {
  if (!existsSync(repo)) throw new UserError(`no such repository: ${repo}`);
  try {
    await git(repo, ['rev-parse', '--verify', '--quiet', BRANCH]);
  } catch {
    throw new UserError(`${repo} is not a git-annex repository (no git-annex branch)`);
  }
}

/** Reads files from the git-annex branch (journal first); absent files map to ''. */
export async function readBranchFiles(repo: string, paths: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (paths.length === 0) return out;
  const journal = join(await gitDir(repo), 'annex', 'journal');
  const fromBranch: string[] = [];
  for (const p of paths) {
    const j = join(journal, journalName(p));
    if (existsSync(j)) out.set(p, readFileSync(j, 'utf8'));
    else fromBranch.push(p);
  }
  if (fromBranch.length > 0) {
    const raw = await git(repo, ['cat-file', '--batch'], fromBranch.map((p) => `${BRANCH}:${p}\n`).join(''));
    let pos = 0;
    for (const p of fromBranch) {
      const nl = raw.indexOf(0x0a, pos);
      const header = raw.subarray(pos, nl).toString('utf8');
      pos = nl + 1;
      if (header.endsWith(' missing')) {
        out.set(p, '');
        continue;
      }
      const size = Number(header.split(' ')[2]);
      out.set(p, raw.subarray(pos, pos + size).toString('utf8'));
      pos += size + 1;
    }
  }
  return out;
}

export async function listBranchFiles(repo: string): Promise<string[]> {
  const text = (await git(repo, ['ls-tree', '-r', '--name-only', BRANCH])).toString('utf8');
  return text.split('\n').filter((l) => l.length > 0);
}

/** Seconds with nanoseconds and the trailing `s`, as git-annex writes timestamps. */
export function annexTimestamp(seconds = Date.now() / 1000): string {
  return `${seconds.toFixed(9)}s`;
}

export function parseTimestamp(text: string): number {
  return Number(text.replace(/s$/, ''));
}

/** remote.log: `<uuid> k=v … timestamp=<t>s`; the newest line per uuid wins. */
export function parseRemoteLog(text: string): Map<string, Record<string, string>> {
  const best = new Map<string, { time: number; fields: Record<string, string> }>();
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words.length < 2) continue;
    const fields: Record<string, string> = {};
    for (const w of words.slice(1)) {
      const eq = w.indexOf('=');
      if (eq > 0) fields[w.slice(0, eq)] = w.slice(eq + 1);
    }
    const time = parseTimestamp(fields.timestamp ?? '0');
    delete fields.timestamp;
    const prev = best.get(words[0]);
    if (!prev || prev.time <= time) best.set(words[0], { time, fields });
  }
  return new Map([...best].map(([uuid, v]) => [uuid, v.fields]));
}

export function formatRemoteLogLine(uuid: string, fields: Record<string, string>, time?: number): string {
  const body = Object.keys(fields)
    .sort()
    .map((k) => `${k}=${fields[k]}`)
    .join(' ');
  return `${uuid} ${body} timestamp=${annexTimestamp(time)}`;
}

/** Replaces (or adds) the line for `id` in a log where lines are keyed by a field; keeps others as they are. */
export function replaceLine(text: string, matches: (line: string) => boolean, line: string): string {
  const kept = text.split('\n').filter((l) => l.trim().length > 0 && !matches(l));
  kept.push(line);
  return kept.sort().join('\n') + '\n';
}

export function locationLogPath(key: string): string {
  return `${hashDirLower(key)}/${key}.log`;
}

export function chunkLogPath(key: string): string {
  return `${hashDirLower(key)}/${key}.log.cnk`;
}

/** Presence of `uuid` in a location log (`<t>s <0|1> <uuid>`, newest wins). */
export function presenceIn(text: string, uuid: string): { present: boolean; time: number } | null {
  let best: { present: boolean; time: number } | null = null;
  for (const line of text.split('\n')) {
    const [t, status, who] = line.trim().split(/\s+/);
    if (who !== uuid) continue;
    const time = parseTimestamp(t);
    if (!best || best.time <= time) best = { present: status === '1', time };
  }
  return best;
}

/** Chunk layout of `uuid` in a chunk log (`<t>s <uuid>:<chunksize> <count>`, newest wins; count 0 = removed). */
export function chunksIn(text: string, uuid: string): { chunkSize: number; chunkCount: number } | null {
  let best: { chunkSize: number; chunkCount: number; time: number } | null = null;
  for (const line of text.split('\n')) {
    const [t, where, count] = line.trim().split(/\s+/);
    if (!where?.startsWith(uuid + ':')) continue;
    const time = parseTimestamp(t);
    if (!best || best.time <= time) {
      best = { chunkSize: Number(where.slice(uuid.length + 1)), chunkCount: Number(count), time };
    }
  }
  return best && best.chunkCount > 0 ? { chunkSize: best.chunkSize, chunkCount: best.chunkCount } : null;
}

/** Commits new contents for some branch files in one commit, with `git fast-import`. */
export async function commitBranchFiles(
  repo: string,
  files: Map<string, string>,
  message: string,
): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const parts: Buffer[] = [];
  const data = (s: string | Buffer) => {
    const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8');
    parts.push(Buffer.from(`data ${b.length}\n`), b, Buffer.from('\n'));
  };
  parts.push(Buffer.from(`commit ${BRANCH}\ncommitter coffre <coffre@localhost> ${now} +0000\n`));
  data(message);
  parts.push(Buffer.from(`from ${BRANCH}^0\n`));
  for (const [path, content] of files) {
    parts.push(Buffer.from(`M 100644 inline ${path}\n`));
    data(content);
  }
  parts.push(Buffer.from('done\n'));
  await git(repo, ['fast-import', '--quiet', '--done'], Buffer.concat(parts));
}
