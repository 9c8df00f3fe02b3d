// bench/lib/cpu-time: CPU time (user + system) a process has used so far, from /proc (Linux). A figure that
// holds up on a busy machine, where wall-clock throughput depends on what else is running.
import { readFileSync } from 'node:fs';

// Clock ticks per second of /proc/<pid>/stat times (USER_HZ): 100 on every Linux architecture Node runs on.
const TICKS_PER_SECOND = 100;

/** Seconds of CPU the process `pid` has used (utime + stime). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / TICKS_PER_SECOND;
}
