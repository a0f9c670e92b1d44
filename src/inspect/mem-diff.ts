// Streamed memory diff of two snapshots: both files are read in guest page
// order, a window of pages at a time, and pages are compared byte for byte
// (memcmp through Buffer#compare) as they arrive.  No hashing: a page read
// once and compared costs less than hashing it (`npm run bench -- diff`
// prints both; docs/benchmarks.md), and nothing but two windows is ever in
// memory.
//
// In a snapshot written by writeRam, the pages of a window lie in a few
// contiguous stretches of the file, so a window costs a handful of large
// positional reads; the next window's reads run (on libuv's pool) while the
// current one is compared.  Pages absent from a file are zero.
import { ABSENT, PAGE_SIZE, type PageReader } from '../migrate/index.js';

/** Pages per window: 16 MiB of guest memory, at most 16 MiB read per file (bench "diff"). */
export const DIFF_WINDOW_PAGES = 4096;
/** Bytes between two stored pages read through rather than skipped with a second read (a batch's page list and frame). */
const READ_THROUGH = 64 << 10;

export interface PageRange {
  /** First differing page frame; its GPA is `pfn * 4096`. */
  pfn: number;
  pages: number;
}

export interface MemoryDiff {
  /** Pages compared: the larger of the two guests. */
  comparedPages: number;
  differingPages: number;
  /** Runs of consecutive differing pages, in order. */
  ranges: PageRange[];
  /** Differing pages that are zero (not stored) in A, and in B. */
  zeroInA: number;
  zeroInB: number;
}

interface Window {
  /** Per page of the window: offset in `buf`, or -1 for zero. */
  pos: Int32Array;
  buf: Buffer;
}

const ZERO = Buffer.alloc(PAGE_SIZE);

function newWindow(): Window {
  return { pos: new Int32Array(DIFF_WINDOW_PAGES), buf: Buffer.allocUnsafeSlow(DIFF_WINDOW_PAGES * PAGE_SIZE) };
}

/** Reads the stored pages of `[p0, p0+n)` of `idx` into `win`. */
async function gather(idx: PageReader, p0: number, n: number, win: Window): Promise<void> {
  const { where } = idx.index;
  const pos = win.pos;
  pos.fill(-1);
  // Raw pages: (slot, file offset) in offset order; snapshots are written in page order, so this is already sorted.
  const slots: number[] = [];
  const offs: number[] = [];
  const deflated: number[] = [];
  let sorted = true;
  for (let k = 0; k < n; k++) {
    const p = p0 + k;
    const w = p < where.length ? where[p]! : ABSENT;
    if (w === ABSENT) continue;
    if (w < 0) {
      deflated.push(k);
      continue;
    }
    if (offs.length && w < offs[offs.length - 1]!) sorted = false;
    slots.push(k);
    offs.push(w);
  }
  if (!sorted) {
    const order = offs.map((_, i) => i).sort((x, y) => offs[x]! - offs[y]!);
    const s2 = order.map((i) => slots[i]!);
    const o2 = order.map((i) => offs[i]!);
    slots.splice(0, slots.length, ...s2);
    offs.splice(0, offs.length, ...o2);
  }
  // Group into stretches read with one call each.
  const reads: { at: number; from: number; length: number }[] = [];
  let need = 0;
  for (let i = 0; i < offs.length;) {
    const start = offs[i]!;
    let end = start + PAGE_SIZE;
    let j = i + 1;
    while (j < offs.length && offs[j]! >= end - PAGE_SIZE && offs[j]! - end <= READ_THROUGH) {
      end = Math.max(end, offs[j]! + PAGE_SIZE);
      j++;
    }
    for (let q = i; q < j; q++) pos[slots[q]!] = need + (offs[q]! - start);
    reads.push({ at: need, from: start, length: end - start });
    need += end - start;
    i = j;
  }
  need += deflated.length * PAGE_SIZE;
  if (win.buf.length < need) win.buf = Buffer.allocUnsafeSlow(need);
  const buf = win.buf;
  await Promise.all(reads.map((r) => idx.readAt(buf, r.at, r.length, r.from)));
  let at = need - deflated.length * PAGE_SIZE;
  for (const k of deflated) {
    await idx.readPage(p0 + k, buf, at);
    pos[k] = at;
    at += PAGE_SIZE;
  }
}

export async function diffMemory(
  a: PageReader,
  b: PageReader,
  onProgress?: (donePages: number, totalPages: number) => void,
): Promise<MemoryDiff> {
  const total = Math.max(a.index.guestPages, b.index.guestPages);
  const out: MemoryDiff = { comparedPages: total, differingPages: 0, ranges: [], zeroInA: 0, zeroInB: 0 };
  // Two windows per file: one being compared, one being read.
  const wins = [
    [newWindow(), newWindow()],
    [newWindow(), newWindow()],
  ] as const;
  const load = (p0: number, slot: 0 | 1): Promise<void> => {
    const n = Math.min(DIFF_WINDOW_PAGES, total - p0);
    return Promise.all([gather(a, p0, n, wins[0][slot]), gather(b, p0, n, wins[1][slot])]).then(() => undefined);
  };
  let slot: 0 | 1 = 0;
  let pending: Promise<void> | null = total > 0 ? load(0, 0) : null;
  let last: PageRange | null = null;
  for (let p0 = 0; p0 < total; p0 += DIFF_WINDOW_PAGES) {
    await pending;
    const next = p0 + DIFF_WINDOW_PAGES;
    pending = next < total ? load(next, slot === 0 ? 1 : 0) : null;
    const wa = wins[0][slot];
    const wb = wins[1][slot];
    const n = Math.min(DIFF_WINDOW_PAGES, total - p0);
    for (let k = 0; k < n; k++) {
      const pa = wa.pos[k]!;
      const pb = wb.pos[k]!;
      let differ: boolean;
      if (pa < 0 && pb < 0) continue;
      if (pa < 0) {
        differ = wb.buf.compare(ZERO, 0, PAGE_SIZE, pb, pb + PAGE_SIZE) !== 0;
        if (differ) out.zeroInA++;
      } else if (pb < 0) {
        differ = wa.buf.compare(ZERO, 0, PAGE_SIZE, pa, pa + PAGE_SIZE) !== 0;
        if (differ) out.zeroInB++;
      } else {
        differ = wa.buf.compare(wb.buf, pb, pb + PAGE_SIZE, pa, pa + PAGE_SIZE) !== 0;
      }
      if (!differ) continue;
      out.differingPages++;
      const pfn = p0 + k;
      if (last && last.pfn + last.pages === pfn) last.pages++;
      else out.ranges.push((last = { pfn, pages: 1 }));
    }
    onProgress?.(Math.min(next, total), total);
    slot = slot === 0 ? 1 : 0;
  }
  return out;
}
