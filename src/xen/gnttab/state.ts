// The `gnttab` state section: the grant table's version, its size, and where
// the guest mapped each frame.  The frames' contents (the entries) are
// emulator pages and travel with them (the xen_pages section), not here.
//
// History:
//   v1  version, nr_frames, frame_gpfn.  The section is optional: a stream
//       written before it existed leaves the fresh table (one frame, nothing
//       mapped), which is what such a guest had.
import { FormatError } from '../../errors.js';
import { defineState, u32, u64, varArray, type StateOf } from '../../vmstate/index.js';
import {
  MAX_GRANT_FRAMES,
  NR_SPECIAL_PAGES,
  SHARED_INFO_FRAME,
  SPECIAL_PFN_BASE,
  type MemoryLayout,
} from '../memory/layout.js';
import { INVALID_GPA } from '../domain.js';
import type { XenShared } from '../tables.js';
import type { FrameSlots } from './slots.js';
import { GNTTAB_MAX_VERSION, INITIAL_NR_GRANT_FRAMES, MAX_FRAME_GPFN } from './table.js';

/** frame_gpfn of a frame the guest has not mapped (Xen's INVALID_GFN). */
export const UNMAPPED_GPFN = 0xffff_ffff_ffff_ffffn;

export const gnttabState = defineState({
  name: 'gnttab',
  version: 1,
  fields: {
    /** Grant table version in force (only 1 is offered). */
    version: u32(),
    /** Frames the table has grown to (GNTTABOP_setup_table, add_to_physmap). */
    nr_frames: u32(),
    /** The gpfn each frame is mapped at (XENMAPSPACE_grant_table), UNMAPPED_GPFN if none. */
    frame_gpfn: varArray(u64(), { lengthField: 'nr_frames', max: MAX_GRANT_FRAMES }),
  },
});
export type GnttabState = StateOf<typeof gnttabState>;

/** A fresh domain's table (what a machine saved before grant tables existed had). */
export function initialGnttabState(): GnttabState {
  return { version: 1, nr_frames: INITIAL_NR_GRANT_FRAMES, frame_gpfn: [UNMAPPED_GPFN] };
}

export function saveGnttab(s: XenShared): GnttabState {
  const t = s.grants;
  return t.withLock(() => {
    const n = t.nrFrames;
    const frame_gpfn = Array.from({ length: n }, (_, f) => {
      const g = t.gpfnOf(f);
      return g < 0 ? UNMAPPED_GPFN : BigInt(g);
    });
    return { version: t.version, nr_frames: n, frame_gpfn };
  });
}

/**
 * Writes the table into a machine that has not started and puts each mapped
 * frame back in guest-physical space (its KVM slot).  Frames a rehearsal
 * mapped before are removed first.
 */
export function restoreGnttab(s: XenShared, slots: FrameSlots, st: GnttabState, ramLayout: MemoryLayout): void {
  const t = s.grants;
  t.withLock(() => {
    for (let f = 0; f < MAX_GRANT_FRAMES; f++) {
      if (t.gpfnOf(f) < 0) continue;
      t.setGpfn(f, -1);
      slots.unmap(f);
    }
    t.version = st.version;
    t.nrFrames = st.nr_frames;
    st.frame_gpfn.forEach((g, f) => {
      if (g === UNMAPPED_GPFN) return;
      if (!slots.map(f, Number(g)))
        throw new FormatError(`gnttab.frame_gpfn[${f}]: this host's KVM cannot map a page at gpfn 0x${g.toString(16)}`);
      t.setGpfn(f, Number(g));
    });
    // shared_info outside RAM (xen_overlay, restored before this) is placed like a frame.
    if (t.gpfnOf(SHARED_INFO_FRAME) >= 0) {
      t.setGpfn(SHARED_INFO_FRAME, -1);
      slots.unmap(SHARED_INFO_FRAME);
    }
    const si = s.domain.sharedInfoGpa;
    if (si !== INVALID_GPA && !ramLayout.isRamFrame(si / 4096n)) {
      const g = Number(si / 4096n);
      if (!slots.map(SHARED_INFO_FRAME, g))
        throw new FormatError(`xen_overlay.shinfo_gpa: this host's KVM cannot map a page at gpfn 0x${g.toString(16)}`);
      t.setGpfn(SHARED_INFO_FRAME, g);
    }
  });
}

function bad(path: string, what: string): never {
  throw new FormatError(`gnttab.${path}: ${what}`);
}

/** As GNTTABOP and add_to_physmap could have left it, for a machine of `layout`. */
export function checkGnttab(st: GnttabState, layout: MemoryLayout): void {
  if (st.version !== GNTTAB_MAX_VERSION) bad('version', `grant table version ${st.version} is not offered (v1 only)`);
  if (st.nr_frames < 1 || st.nr_frames > MAX_GRANT_FRAMES)
    bad('nr_frames', `${st.nr_frames} frames is not between 1 and ${MAX_GRANT_FRAMES}`);
  if (st.frame_gpfn.length !== st.nr_frames) bad('frame_gpfn', `has ${st.frame_gpfn.length} entries, not nr_frames`);
  const seen = new Map<bigint, number>();
  st.frame_gpfn.forEach((g, f) => {
    if (g === UNMAPPED_GPFN) return;
    const p = `frame_gpfn[${f}]`;
    const hex = `0x${g.toString(16)}`;
    if (g > BigInt(MAX_FRAME_GPFN)) bad(p, `gpfn ${hex} is beyond the frames a grant frame may be mapped at`);
    if (layout.isRamFrame(g)) bad(p, `gpfn ${hex} is guest RAM`);
    const n = Number(g);
    if (n >= SPECIAL_PFN_BASE && n < SPECIAL_PFN_BASE + NR_SPECIAL_PAGES) bad(p, `gpfn ${hex} is a special page`);
    const other = seen.get(g);
    if (other !== undefined) bad(p, `gpfn ${hex} is also where frame ${other} is mapped`);
    seen.set(g, f);
  });
}
