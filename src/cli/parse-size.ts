import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1 << 20, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 };

/** "64M", "1G", "65536K", "1T" or a plain number of MiB → bytes. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+)([kKmMgGtT]?)(i?[bB])?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: cannot read size "${text}" (try 64M or 1G)`);
  const bytes = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`${flag}: size "${text}" is out of range`);
  return bytes;
}
