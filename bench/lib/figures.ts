// bench/lib/figures: one timed measurement (wall-clock MiB/s and the CPU time the measured processes spent per
// MiB), and the markdown table the S3 benches print their figures in.
import { cpuSeconds } from './cpu-time.js';

const MiB = 1024 * 1024;

/** Wall-clock throughput (MiB/s) and the measured processes' CPU time per MiB moved (ms). */
export interface Figure {
  mibps: number;
  cpuMsPerMib: number;
}

/** Runs `op(0…count-1)` in sequence, each moving `bytes`, and measures it against the processes `pids`. */
export async function measure(
  pids: number[],
  count: number,
  bytes: number,
  op: (i: number) => Promise<unknown>,
): Promise<Figure> {
  const cpu = () => pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const cpu0 = cpu();
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await op(i);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const mib = (count * bytes) / MiB;
  return { mibps: mib / seconds, cpuMsPerMib: ((cpu() - cpu0) * 1000) / mib };
}

/** Prints `rows` under `header` as a markdown table, cells right-aligned, after the `legend` lines. */
export function printMarkdownTable(legend: string[], header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((l) => l[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  for (const l of legend) console.log(l);
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}
