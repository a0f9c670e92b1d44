// GNTTABOP (hypercall 20) and XENMAPSPACE_grant_table, version 1, as Xen
// serves an HVM/PVH guest (docs/xen-abi.md, "Grant tables").  The table
// starts with one frame and grows on demand up to MAX_GRANT_FRAMES, as Xen's
// gnttab_grow_table does; frames appear in the guest where it maps them with
// XENMEM_add_to_physmap.  Every argument is guest-controlled: answers are
// negated errnos or GNTST_* codes in the op structure, never an exception.
import { DOMID_SELF, Errno, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, GnttabOp, Gntst, Gtf } from '../abi.js';
import { MAX_GRANT_FRAMES, NR_SPECIAL_PAGES, SHARED_INFO_FRAME, SPECIAL_PFN_BASE } from '../memory/layout.js';
import type { HypercallCall, HypercallEnv } from '../hypercall/types.js';
import type { XenContext } from '../context.js';
import { GNTTAB_MAX_VERSION, GRANT_ENTRY_V1_SIZE, grantFrameOffset, MAX_FRAME_GPFN } from './table.js';

const err = (e: number): bigint => BigInt(-e);

/** The sub-ops Xen lets an HVM guest make (hvm_grant_table_op); the others are -ENOSYS there too. */
const HVM_OPS: ReadonlySet<number> = new Set([
  GnttabOp.query_size,
  GnttabOp.setup_table,
  GnttabOp.set_version,
  GnttabOp.get_version,
  GnttabOp.copy,
  GnttabOp.map_grant_ref,
  GnttabOp.unmap_grant_ref,
  GnttabOp.swap_grant_ref,
]);

/**
 * Whom a `dom` field names, as Xen's rcu_lock_domain_by_any_id and its XSM
 * check answer a guest: itself (DOMID_SELF), domain 0 (it exists: the
 * backends' domain, which the guest may not manage), or nobody.
 */
function domStatus(dom: number): number {
  if (dom === DOMID_SELF) return Gntst.okay;
  return dom === 0 ? Gntst.permission_denied : Gntst.bad_domain;
}

/**
 * Grows the table to `n` frames (Xen's gnttab_grow_table); new frames start
 * zeroed.  The caller holds the table lock and has checked `n` <= the max.
 */
export function growTable(x: XenContext, n: number): void {
  const t = x.shared.grants;
  for (let f = t.nrFrames; f < n; f++) x.phys.fill(0, grantFrameOffset(f), 4096);
  if (n > t.nrFrames) t.nrFrames = n;
}

function querySize(env: HypercallEnv, uop: bigint, count: number): bigint {
  if (count !== 1) return err(Errno.EINVAL);
  const raw = env.mem.read(uop, 16);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const status = domStatus(v.getUint16(0, true));
  if (status === Gntst.okay) {
    v.setUint32(4, env.xen.shared.grants.nrFrames, true);
    v.setUint32(8, MAX_GRANT_FRAMES, true);
  }
  v.setInt16(12, status, true);
  return env.mem.write(uop, raw) ? 0n : err(Errno.EFAULT);
}

/**
 * GNTTABOP_setup_table: grows the table to nr_frames and lists, for each
 * frame, what an auto-translated guest gets from Xen: the gpfn the frame is
 * mapped at, or INVALID_GFN (all ones; truncated to 32 bits for a compat
 * caller) while it is not mapped.
 */
function setupTable(env: HypercallEnv, call: HypercallCall, uop: bigint, count: number): bigint {
  if (count !== 1) return err(Errno.EINVAL);
  const raw = env.mem.read(uop, call.is64 ? 24 : 16);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const nr = v.getUint32(4, true);
  const list = call.is64 ? v.getBigUint64(16, true) : BigInt(v.getUint32(12, true));
  let status = domStatus(v.getUint16(0, true));
  if (status === Gntst.okay && nr > MAX_GRANT_FRAMES) status = Gntst.general_error;
  if (status === Gntst.okay) {
    const t = env.xen.shared.grants;
    const gpfns = t.withLock(() => {
      growTable(env.xen, nr);
      return Array.from({ length: nr }, (_, f) => t.gpfnOf(f));
    });
    const size = call.is64 ? 8 : 4;
    const out = new DataView(new ArrayBuffer(nr * size));
    gpfns.forEach((g, i) => {
      if (size === 8) out.setBigUint64(i * 8, g < 0 ? 0xffff_ffff_ffff_ffffn : BigInt(g), true);
      else out.setUint32(i * 4, g < 0 ? 0xffff_ffff : g, true);
    });
    if (nr > 0 && !env.mem.write(list, new Uint8Array(out.buffer))) status = Gntst.bad_virt_addr;
  }
  v.setInt16(8, status, true);
  return env.mem.write(uop + 8n, raw.subarray(8, 10)) ? 0n : err(Errno.EFAULT);
}

/**
 * GNTTABOP_set_version: 1 is the version in force; 2 is -ENOSYS, as Xen
 * answers when its max version is 1; anything else -EINVAL.  The version in
 * force is written back in every case, as Xen does.
 */
function setVersion(env: HypercallEnv, uop: bigint): bigint {
  const raw = env.mem.read(uop, 4);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const want = v.getUint32(0, true);
  let rc = 0n;
  if (want !== 1 && want !== 2) rc = err(Errno.EINVAL);
  else if (want > GNTTAB_MAX_VERSION) rc = err(Errno.ENOSYS);
  v.setUint32(0, env.xen.shared.grants.version, true);
  return env.mem.write(uop, raw) ? rc : err(Errno.EFAULT);
}

function getVersion(env: HypercallEnv, uop: bigint): bigint {
  const raw = env.mem.read(uop, 8);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const status = domStatus(v.getUint16(0, true));
  if (status === Gntst.bad_domain) return err(Errno.ESRCH);
  if (status === Gntst.permission_denied) return err(Errno.EPERM);
  v.setUint32(4, env.xen.shared.grants.version, true);
  return env.mem.write(uop + 4n, raw.subarray(4, 8)) ? 0n : err(Errno.EFAULT);
}

/** -ENOSYS; the dispatcher logs it once under its name (hypercall/names.ts). */
function unimplemented(): bigint {
  return err(Errno.ENOSYS);
}

/** Hypercall 20: grant_table_op(cmd, uop, count). */
export function grantTableOp(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0]! & 0xffff_ffffn);
  const uop = call.args[1]!;
  const count = Number(call.args[2]! & 0xffff_ffffn);
  if (!HVM_OPS.has(cmd)) return unimplemented();
  // Xen takes count as an unsigned int and refuses what would be negative as an int.
  if ((count | 0) < 0) return err(Errno.EINVAL);
  switch (cmd) {
    case GnttabOp.query_size:
      return querySize(env, uop, count);
    case GnttabOp.setup_table:
      return setupTable(env, call, uop, count);
    case GnttabOp.set_version:
      return setVersion(env, uop);
    case GnttabOp.get_version:
      return getVersion(env, uop);
    default:
      return unimplemented();
  }
}

/**
 * Why grant frames cannot go at `gpfn`, or null.  Xen would let a frame
 * replace a RAM page or a special page; here both are parts of bigger KVM
 * slots that would have to be split while other vCPUs run (docs/xen-abi.md,
 * "Grant tables"), so such a gpfn is refused with -EINVAL.
 */
/** The IOAPIC's frame: from it to the special pages sit the interrupt controllers (LAPIC at 0xfee00). */
const IOAPIC_PFN = 0xfec00;

function placementProblem(x: XenContext, gpfn: bigint): string | null {
  if (gpfn > BigInt(MAX_FRAME_GPFN)) return 'beyond the frames a grant frame may be mapped at';
  if (x.phys.layout.isRamFrame(gpfn)) return 'a RAM frame';
  const g = Number(gpfn);
  if (g >= SPECIAL_PFN_BASE && g < SPECIAL_PFN_BASE + NR_SPECIAL_PAGES) return 'a special page';
  if (g >= IOAPIC_PFN && g < SPECIAL_PFN_BASE) return 'the interrupt controllers';
  return null;
}

/**
 * XENMEM_add_to_physmap, XENMAPSPACE_grant_table: maps grant frame `idx` at
 * `gpfn`, growing the table to reach it (Xen's gnttab_map_frame).  A frame
 * mapped elsewhere moves (its old place becomes a hole); a frame already at
 * `gpfn` is unhooked from it, as Xen unhooks a special page.  The v2 status
 * flag (XENMAPIDX_grant_table_status) is not stripped for a v1 table, so it
 * makes `idx` too large: -EINVAL, as on Xen.
 */
export function mapGrantFrame(env: HypercallEnv, idx: bigint, gpfn: bigint): bigint {
  const x = env.xen;
  if (idx >= BigInt(MAX_GRANT_FRAMES)) return err(Errno.EINVAL);
  if (placementProblem(x, gpfn) !== null) return err(Errno.EINVAL);
  const frame = Number(idx);
  const g = Number(gpfn);
  const t = x.shared.grants;
  return t.withLock(() => {
    growTable(x, frame + 1);
    if (t.gpfnOf(frame) === g) return 0n;
    const other = t.frameAt(g);
    if (other >= 0) unmapFrame(x, other);
    if (t.gpfnOf(frame) >= 0) unmapFrame(x, frame);
    if (!x.frameSlots.map(frame, g)) return err(Errno.EINVAL);
    t.setGpfn(frame, g);
    return 0n;
  });
}

/**
 * XENMEM_add_to_physmap, XENMAPSPACE_shared_info at a frame that is not RAM
 * (GRUB's choice: just past its memory map): the emulator's shared_info page
 * is placed there like a grant frame, unhooking a frame that was there.
 * `gpfn` null takes it away again (shared_info moved into RAM).  False if
 * the frame may not hold it.
 */
export function placeSharedInfoFrame(x: XenContext, gpfn: bigint | null): boolean {
  const t = x.shared.grants;
  if (gpfn === null) {
    if (t.gpfnOf(SHARED_INFO_FRAME) >= 0) t.withLock(() => unmapFrame(x, SHARED_INFO_FRAME));
    return true;
  }
  if (placementProblem(x, gpfn) !== null) return false;
  const g = Number(gpfn);
  return t.withLock(() => {
    if (t.gpfnOf(SHARED_INFO_FRAME) === g) return true;
    const other = t.frameAt(g);
    if (other >= 0) unmapFrame(x, other);
    if (t.gpfnOf(SHARED_INFO_FRAME) >= 0) unmapFrame(x, SHARED_INFO_FRAME);
    if (!x.frameSlots.map(SHARED_INFO_FRAME, g)) return false;
    t.setGpfn(SHARED_INFO_FRAME, g);
    return true;
  });
}

function unmapFrame(x: XenContext, frame: number): void {
  x.shared.grants.setGpfn(frame, -1);
  x.frameSlots.unmap(frame);
}

/**
 * What Xen's toolstack writes into a new domain's table (xc_dom_gnttab_seed):
 * the console and xenstore pages granted to their backends' domain, in the
 * reserved entries, so a backend may map them through the table.
 */
export function seedReservedEntries(x: XenContext, consolePfn: number, storePfn: number, backendDomid = 0): void {
  const seed = (ref: number, pfn: number): void => {
    const at = grantFrameOffset(0) + ref * GRANT_ENTRY_V1_SIZE;
    x.phys.setU32(at, (Gtf.permit_access | (backendDomid << 16)) >>> 0);
    x.phys.setU32(at + 4, pfn);
  };
  seed(GNTTAB_RESERVED_CONSOLE, consolePfn);
  seed(GNTTAB_RESERVED_XENSTORE, storePfn);
}
