// Plain-text building blocks shared by every inspector view: aligned tables,
// hex numbers, byte sizes, and colour that is only ever switched on by the
// caller (the CLI decides from isTTY and NO_COLOR; the library never looks).

export interface Style {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
}

const sgr =
  (code: number) =>
  (s: string): string =>
    `\x1b[${code}m${s}\x1b[0m`;
const id = (s: string): string => s;

export function style(enabled: boolean): Style {
  return enabled
    ? { enabled, bold: sgr(1), dim: sgr(2), red: sgr(31), green: sgr(32), yellow: sgr(33) }
    : { enabled, bold: id, dim: id, red: id, green: id, yellow: id };
}

export const PLAIN = style(false);

/** Colour for a stream: only a TTY, and never when NO_COLOR is set to anything non-empty (no-color.org). */
export function colorFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env['NO_COLOR'];
}

/** Length as a terminal shows it: escape sequences take no room. */
const visible = (s: string): number => s.replace(/\x1b\[[0-9;]*m/g, '').length;

export interface TableOptions {
  /** Columns (by index) padded on the left, e.g. numbers. */
  readonly right?: ReadonlySet<number> | readonly number[];
  readonly indent?: string;
  /** Header styling (bold on a TTY). */
  readonly style?: Style;
}

/** An aligned table: two spaces between columns, no trailing blanks. */
export function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  opts: TableOptions = {},
): string[] {
  const right = new Set(opts.right ?? []);
  const widths = head.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const pad = (c: string, i: number): string => {
    const gap = ' '.repeat(Math.max(0, widths[i]! - visible(c)));
    return right.has(i) ? gap + c : c + gap;
  };
  const line = (cells: readonly string[]): string =>
    (opts.indent ?? '') +
    cells
      .map((c, i) => pad(c, i))
      .join('  ')
      .trimEnd();
  const st = opts.style ?? PLAIN;
  return [st.bold(line(head)), ...rows.map(line)];
}

/** `key  value` lines with the keys aligned. */
export function keyValues(pairs: readonly (readonly [string, string])[], indent = ''): string[] {
  const w = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${indent}${k.padEnd(w)}  ${v}`.trimEnd());
}

/** `0x1fe040`; `width` zero-pads to that many hex digits. */
export function hex(v: bigint | number, width = 0): string {
  const n = typeof v === 'bigint' ? (v < 0n ? BigInt.asUintN(64, v) : v) : v < 0 ? v >>> 0 : v;
  return `0x${n.toString(16).padStart(width, '0')}`;
}

/** A 64-bit register as 16 hex digits in groups of four: `0x0000_0000_001f_e040`. */
export function hex64(v: bigint): string {
  const s = BigInt.asUintN(64, v).toString(16).padStart(16, '0');
  return `0x${s.slice(0, 4)}_${s.slice(4, 8)}_${s.slice(8, 12)}_${s.slice(12)}`;
}

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[u]}`;
}

/** Nanoseconds as seconds with nine decimals, `12.345678901 s`. */
export function nsText(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  return `${neg ? '-' : ''}${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, '0')} s`;
}

/** A short duration for people: `3.2 ms`, `1.50 s`, `250 ns`. */
export function durationText(ns: bigint): string {
  const neg = ns < 0n;
  const a = Number(neg ? -ns : ns);
  const t =
    a < 1e3
      ? `${a} ns`
      : a < 1e6
        ? `${(a / 1e3).toFixed(1)} µs`
        : a < 1e9
          ? `${(a / 1e6).toFixed(1)} ms`
          : `${(a / 1e9).toFixed(2)} s`;
  return neg ? `-${t}` : t;
}

/** JSON.stringify that writes bigint as a decimal string (the convention of `toJson`). */
export function jsonText(v: unknown, indent = 2): string {
  return JSON.stringify(
    v,
    (_k, x: unknown) =>
      typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x,
    indent,
  );
}
