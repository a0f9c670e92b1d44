// memory_op sub-ops other than add_to_physmap: the memory map (read and set)
// and the reservation ops a balloon driver uses.  Every argument is the
// guest's; answers follow Xen's common/memory.c and arch/x86/mm.c, including
// their quirks: the reservation ops never return an errno, only how many
// extents they completed, and a long one stops to let the guest run and is
// re-issued with its progress in the command (a continuation).  What KVM
// cannot do as Xen does is in docs/xen-abi.md "Memory reservation".
import { DOMID_SELF, Errno, MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT, XENMEMF_populate_on_demand, XenMem } from '../abi.js';
import type { HypercallCall, HypercallEnv } from '../hypercall/types.js';
import { NR_SPECIAL_PAGES, SPECIAL_PFN_BASE } from './layout.js';
import { E820_ENTRY_BYTES, E820_MAX, MAX_BALLOON_RUNS } from './reservation.js';

const err = (e: number): bigint => BigInt(-e);
const isSelf = (domid: number): boolean => domid === DOMID_SELF || domid === 0;

/** Xen's largest extent order for an unprivileged domain, and for populate-on-demand. */
export const DOMU_MAX_ORDER = 9;
export const POD_MAX_ORDER = 20;
/** Work done per hypercall entry before a continuation lets the guest run (Xen preempts similarly). */
export const EXTENTS_PER_ENTRY = 512;
export const PAGES_PER_ENTRY = 1 << 16;
/** The largest nr_extents whose progress fits a continuation's command (Xen: UINT_MAX >> MEMOP_EXTENT_SHIFT). */
const MAX_EXTENTS = 0xffffffff >>> MEMOP_EXTENT_SHIFT;

/** memory_op with any command but add_to_physmap (dispatch.ts). */
export function memoryOpOther(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = call.args[0]!;
  const op = Number(cmd & BigInt(MEMOP_CMD_MASK));
  const start = Number((cmd & 0xffffffffn) >> BigInt(MEMOP_EXTENT_SHIFT));
  switch (op) {
    case XenMem.increase_reservation:
    case XenMem.decrease_reservation:
    case XenMem.populate_physmap:
      return reservationOp(env, call, op, start);
    case XenMem.memory_map:
      return memoryMap(env, call);
    case XenMem.set_memory_map:
      return setMemoryMap(env, call);
    case XenMem.maximum_ram_page:
      return start !== 0 ? err(Errno.EINVAL) : BigInt(env.mem.ram.layout.end / 4096);
    case XenMem.current_reservation:
    case XenMem.maximum_reservation:
    case XenMem.maximum_gpfn:
      return start !== 0 ? err(Errno.EINVAL) : domainFigure(env, call, op);
    default:
      return err(Errno.ENOSYS);
  }
}

/** XENMEM_current_reservation, maximum_reservation, maximum_gpfn: a number of pages (or a frame) of a domain. */
function domainFigure(env: HypercallEnv, call: HypercallCall, op: number): bigint {
  const raw = env.mem.read(call.args[1]!, 2);
  if (!raw) return err(Errno.EFAULT);
  if (!isSelf(raw[0]! | (raw[1]! << 8))) return err(Errno.ESRCH);
  const r = env.xen.shared.memory;
  if (op === XenMem.current_reservation) return BigInt(r.totPages);
  if (op === XenMem.maximum_reservation) return BigInt(r.ramPages);
  // The highest frame the guest's physmap holds: its last RAM page, the special pages, or a grant frame it mapped.
  const grants = env.xen.shared.grants;
  let top = Math.max(env.mem.ram.layout.end / 4096 - 1, SPECIAL_PFN_BASE + NR_SPECIAL_PAGES - 1);
  for (let f = 0; f < grants.nrFrames; f++) top = Math.max(top, grants.gpfnOf(f));
  return BigInt(top);
}

/**
 * XENMEM_memory_map: the map the guest set with XENMEM_set_memory_map if it
 * did (an empty one answers -ENOSYS, as Xen's "no map" does), else the
 * layout's e820 (what the PVH start info gives); as many entries as the
 * caller's buffer holds, nr_entries says how many were written.
 */
function memoryMap(env: HypercallEnv, call: HypercallCall): bigint {
  const size = call.is64 ? 16 : 8;
  const raw = env.mem.read(call.args[1]!, size);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const capacity = v.getUint32(0, true);
  const buffer = call.is64 ? v.getBigUint64(8, true) : BigInt(v.getUint32(4, true));
  const map =
    env.xen.shared.memory.guestE820() ??
    env.mem.ram.layout.e820().map(([a, s, t]) => [BigInt(a), BigInt(s), t] as [bigint, bigint, number]);
  if (map.length === 0) return err(Errno.ENOSYS);
  const n = Math.min(capacity, map.length);
  const out = new Uint8Array(n * E820_ENTRY_BYTES);
  const o = new DataView(out.buffer);
  map.slice(0, n).forEach(([addr, len, type], i) => {
    o.setBigUint64(i * E820_ENTRY_BYTES, addr, true);
    o.setBigUint64(i * E820_ENTRY_BYTES + 8, len, true);
    o.setUint32(i * E820_ENTRY_BYTES + 16, type, true);
  });
  if (n > 0 && !env.mem.write(buffer, out)) return err(Errno.EFAULT);
  v.setUint32(0, n, true);
  if (!env.mem.write(call.args[1]!, raw.subarray(0, 4))) return err(Errno.EFAULT);
  return 0n;
}

/**
 * XENMEM_set_memory_map (struct xen_foreign_memory_map): Xen lets a domain
 * set its own map (the XSM check is "the target or a privileged caller"),
 * keeps up to E820MAX entries unchecked, and XENMEM_memory_map returns them
 * from then on.  It changes nothing else: RAM stays where the layout has it.
 */
function setMemoryMap(env: HypercallEnv, call: HypercallCall): bigint {
  const raw = env.mem.read(call.args[1]!, call.is64 ? 24 : 12);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const nr = v.getUint32(call.is64 ? 8 : 4, true);
  const buffer = call.is64 ? v.getBigUint64(16, true) : BigInt(v.getUint32(8, true));
  if (nr > E820_MAX) return err(Errno.EINVAL);
  if (!isSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
  const entries = nr === 0 ? new Uint8Array(0) : env.mem.read(buffer, nr * E820_ENTRY_BYTES);
  if (!entries) return err(Errno.EFAULT);
  const e = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
  const map = Array.from({ length: nr }, (_, i): [bigint, bigint, number] => {
    const o = i * E820_ENTRY_BYTES;
    return [e.getBigUint64(o, true), e.getBigUint64(o + 8, true), e.getUint32(o + 16, true)];
  });
  env.xen.shared.memory.setE820(map);
  return 0n;
}

interface Reservation {
  list: bigint;
  nrExtents: number;
  order: number;
  flags: number;
}

/** struct xen_memory_reservation (32 bytes; compat 20), or null if the guest's copy faults or names another domain. */
function readReservation(env: HypercallEnv, call: HypercallCall): Reservation | null {
  const raw = env.mem.read(call.args[1]!, call.is64 ? 32 : 20);
  if (!raw) return null;
  const v = new DataView(raw.buffer);
  const r = call.is64
    ? {
        list: v.getBigUint64(0, true),
        nr: v.getBigUint64(8, true),
        order: v.getUint32(16, true),
        flags: v.getUint32(20, true),
        domid: v.getUint16(24, true),
      }
    : {
        list: BigInt(v.getUint32(0, true)),
        nr: BigInt(v.getUint32(4, true)),
        order: v.getUint32(8, true),
        flags: v.getUint32(12, true),
        domid: v.getUint16(16, true),
      };
  if (!isSelf(r.domid) || r.nr > BigInt(MAX_EXTENTS)) return null;
  // mem_flags' address_bits: a limit at or below one page cannot be met.
  const addressBits = r.flags & 0xff;
  if (addressBits !== 0 && addressBits <= 12) return null;
  return { list: r.list, nrExtents: Number(r.nr), order: r.order, flags: r.flags };
}

/**
 * increase_reservation, decrease_reservation, populate_physmap: the number
 * of extents done, counting from `start` (a continuation's progress).  Any
 * bad input stops the count where it is, as on Xen.
 */
function reservationOp(env: HypercallEnv, call: HypercallCall, op: number, start: number): bigint {
  const r = readReservation(env, call);
  if (!r || start >= r.nrExtents) return BigInt(start);
  const pod = op === XenMem.populate_physmap && (r.flags & XENMEMF_populate_on_demand) !== 0;
  if (r.order > (pod ? POD_MAX_ORDER : DOMU_MAX_ORDER)) return BigInt(start);
  const res = env.xen.shared.memory;
  let done = start;
  let pages = 0;
  res.withLock(() => {
    for (; done < r.nrExtents; done++) {
      if (done !== start && (done - start >= EXTENTS_PER_ENTRY || pages >= PAGES_PER_ENTRY)) {
        call.restart = BigInt(op) | (BigInt(done) << BigInt(MEMOP_EXTENT_SHIFT));
        return;
      }
      if (!oneExtent(env, call, op, r, done)) return;
      pages += 2 ** r.order;
    }
  });
  return BigInt(done);
}

/** Extent `i` of the list; false to stop. */
function oneExtent(env: HypercallEnv, call: HypercallCall, op: number, r: Reservation, i: number): boolean {
  const res = env.xen.shared.memory;
  const n = 2 ** r.order;
  if (op === XenMem.increase_reservation) {
    // An HVM guest learns no frame for these (Xen maps them nowhere): only the count grows.
    if (res.totPages + n > res.ramPages) return false;
    res.unmapped += n;
    return true;
  }
  const size = call.is64 ? 8 : 4;
  const raw = env.mem.read(r.list + BigInt(i * size), size);
  if (!raw) return false;
  const v = new DataView(raw.buffer);
  const gpfn = call.is64 ? v.getBigUint64(0, true) : BigInt(v.getUint32(0, true));
  return op === XenMem.decrease_reservation ? giveBack(env, gpfn, n) : populate(env, gpfn, n);
}

/** The RAM page index of guest frame `gpfn`, or -1 if it is not RAM (special pages, holes, beyond RAM). */
function ramPage(env: HypercallEnv, gpfn: bigint): number {
  const layout = env.mem.ram.layout;
  if (!layout.isRamFrame(gpfn)) return -1;
  return layout.offsetOf(Number(gpfn) * 4096, 4096) / 4096;
}

/**
 * decrease_reservation of one extent: page by page, as Xen removes them,
 * stopping at the first frame that is not populated RAM (pages before it
 * stay given back).  Host memory goes back at once.
 */
function giveBack(env: HypercallEnv, gpfn: bigint, n: number): boolean {
  const res = env.xen.shared.memory;
  let runStart = -1;
  let runLen = 0;
  const flush = () => {
    if (runLen > 0) env.xen.releaseRam(runStart * 4096, runLen * 4096);
    runLen = 0;
  };
  let ok = true;
  for (let j = 0; j < n; j++) {
    const page = ramPage(env, gpfn + BigInt(j));
    if (page < 0 || res.isBallooned(page) || (res.runDeltaIfSet(page) > 0 && res.runs >= MAX_BALLOON_RUNS)) {
      ok = false;
      break;
    }
    res.setBallooned(page, true);
    if (runLen > 0 && page === runStart + runLen) runLen++;
    else {
      flush();
      runStart = page;
      runLen = 1;
    }
  }
  flush();
  return ok;
}

/**
 * populate_physmap of one extent, whole or not at all: an aligned run of
 * ballooned-out RAM frames gets fresh zero pages.  A frame that is already
 * populated, or not RAM of this machine, stops the call (KVM's memory slots
 * are fixed; Xen would swap in a page there, or grow the physmap).
 */
function populate(env: HypercallEnv, gpfn: bigint, n: number): boolean {
  const res = env.xen.shared.memory;
  if (gpfn % BigInt(n) !== 0n || res.totPages + n > res.ramPages) return false;
  const first = ramPage(env, gpfn);
  if (first < 0) return false;
  for (let j = 0; j < n; j++)
    if (ramPage(env, gpfn + BigInt(j)) !== first + j || !res.isBallooned(first + j)) return false;
  // Whatever the guest wrote into the hole meanwhile is dropped: the new pages are zero.
  env.xen.releaseRam(first * 4096, n * 4096);
  for (let j = 0; j < n; j++) res.setBallooned(first + j, false);
  return true;
}
