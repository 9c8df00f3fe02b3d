// bench/lib/proc: memory figures of another process from /proc (Linux).
import { readFileSync, writeFileSync } from 'node:fs';

function statusField(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

// Peak resident set size (bytes) since start or since the last resetPeakRss.
export function peakRss(pid: number): number {
  return statusField(pid, 'VmHWM');
}

export function currentRss(pid: number): number {
  return statusField(pid, 'VmRSS');
}

// Resets the peak (writing 5 to clear_refs, Linux ≥ 4.0); returns false where that is not allowed.
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
