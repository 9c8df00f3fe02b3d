// cli/table: the CLI's tables — columns that line up whatever their contents, headers in capitals. A command
// adds a column by adding one entry to its list; nothing else changes.

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Numbers read best aligned on the right. */
  align?: 'left' | 'right';
}

/** The header line and one line per row, each column as wide as its widest cell, two spaces between. */
export function formatTable<T>(columns: readonly Column<T>[], rows: readonly T[]): string[] {
  const cells = rows.map((row) => columns.map((c) => c.value(row)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (columns[i]!.align === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)];
}
