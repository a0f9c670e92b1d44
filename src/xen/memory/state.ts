// The memory reservation as a state section: which guest frames are holes
// (ballooned out), the pages increase_reservation granted unmapped, and the
// memory map the guest set.  Hole contents are not saved: RAM records carry
// them as zero pages, which is what a hole reads (reservation.ts).  Optional:
// streams of older builds lack it and restore with no holes.
import { FormatError } from '../../errors.js';
import { bool, defineState, struct, u32, u64, varArray, type StateOf } from '../../vmstate/index.js';
import type { MemoryLayout } from './layout.js';
import { E820_MAX, MAX_BALLOON_RUNS, type MemoryReservation, type PageRun } from './reservation.js';

export const xenMemoryState = defineState({
  name: 'xen_memory',
  version: 1,
  fields: {
    /** Pages ballooned out in all (the sum of the runs' counts). */
    ballooned_pages: u64(),
    /** Pages increase_reservation granted that no frame maps. */
    unmapped_pages: u64(),
    nr_holes: u32(),
    /** Runs of ballooned-out guest frames, lowest first. */
    holes: varArray(struct({ first_pfn: u64(), count: u64() }), { lengthField: 'nr_holes', max: MAX_BALLOON_RUNS }),
    /** Whether the guest set its own memory map (XENMEM_set_memory_map); then `e820` is it. */
    guest_e820: bool(),
    nr_e820: u32(),
    e820: varArray(struct({ addr: u64(), size: u64(), type: u32() }), { lengthField: 'nr_e820', max: E820_MAX }),
  },
});
export type XenMemoryState = StateOf<typeof xenMemoryState>;

/** RAM page runs as guest-frame runs: a run that spans the 4 GiB hole becomes two. */
function frameRuns(runs: readonly PageRun[], layout: MemoryLayout): Array<{ first_pfn: bigint; count: bigint }> {
  const out: Array<{ first_pfn: bigint; count: bigint }> = [];
  for (const r of runs) {
    for (const region of layout.regions) {
      const lo = Math.max(r.first, region.offset / 4096);
      const hi = Math.min(r.first + r.count, (region.offset + region.size) / 4096);
      if (hi > lo) out.push({ first_pfn: BigInt(layout.gpaOf(lo * 4096) / 4096), count: BigInt(hi - lo) });
    }
  }
  return out;
}

export function saveMemory(res: MemoryReservation, layout: MemoryLayout): XenMemoryState {
  const { holes, e820 } = res.withLock(() => ({ holes: frameRuns(res.pageRuns(), layout), e820: res.guestE820() }));
  return {
    ballooned_pages: holes.reduce((n, h) => n + h.count, 0n),
    unmapped_pages: BigInt(res.unmapped),
    nr_holes: holes.length,
    holes,
    guest_e820: e820 !== null,
    nr_e820: e820?.length ?? 0,
    e820: (e820 ?? []).map(([addr, size, type]) => ({ addr, size, type })),
  };
}

/** The state into a fresh machine's reservation (checked by checkMemory first). */
export function restoreMemory(res: MemoryReservation, layout: MemoryLayout, st: XenMemoryState): void {
  const runs = st.holes.map((h) => ({
    first: layout.offsetOf(Number(h.first_pfn) * 4096) / 4096,
    count: Number(h.count),
  }));
  res.withLock(() =>
    res.load(
      runs,
      Number(st.unmapped_pages),
      st.guest_e820 ? st.e820.map((e) => [e.addr, e.size, e.type] as const) : null,
    ),
  );
}

/**
 * What the reservation ops could have left: holes of RAM frames of this
 * machine, sorted and apart, summing to ballooned_pages; no more unmapped
 * pages than holes (the reservation never exceeds the machine); a map only
 * if the guest set one.
 */
export function checkMemory(st: XenMemoryState, layout: MemoryLayout): void {
  const fail = (path: string, what: string): never => {
    throw new FormatError(`xen_memory.${path}: ${what}`);
  };
  let end = -2n;
  let total = 0n;
  st.holes.forEach((h, i) => {
    if (h.count === 0n) fail(`holes[${i}].count`, 'is 0');
    if (h.first_pfn <= end + 1n)
      fail(`holes[${i}].first_pfn`, `0x${h.first_pfn.toString(16)} overlaps or touches the hole before`);
    const last = h.first_pfn + h.count - 1n;
    const first = layout.offsetOf(h.first_pfn * 4096n, 4096);
    const lastAt = layout.offsetOf(last * 4096n, 4096);
    if (
      first < 0 ||
      !layout.isRamFrame(h.first_pfn) ||
      !layout.isRamFrame(last) ||
      lastAt - first !== Number(last - h.first_pfn) * 4096
    )
      fail(
        `holes[${i}]`,
        `frames 0x${h.first_pfn.toString(16)}+${h.count} are not RAM of this ${layout.memBytes >> 20} MiB machine`,
      );
    end = last;
    total += h.count;
  });
  if (total !== st.ballooned_pages) fail('ballooned_pages', `is ${st.ballooned_pages}, the holes hold ${total}`);
  if (st.unmapped_pages > st.ballooned_pages)
    fail(
      'unmapped_pages',
      `${st.unmapped_pages} would take the reservation beyond the machine's ${layout.memBytes / 4096} pages`,
    );
  if (!st.guest_e820 && st.nr_e820 !== 0) fail('nr_e820', 'is not 0 although the guest set no memory map');
}
