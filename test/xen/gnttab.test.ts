// Grant tables v1 on plain memory: GNTTABOP query_size / setup_table /
// get_version / set_version, XENMAPSPACE_grant_table frames, the backend
// grant API (map, unmap, copy) with every flag and GNTST error, and the
// gnttab section's check.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno, GnttabOp, Gntst, Gtf, Hypercall, XenMem } from '../../src/xen/abi.js';
import { GrantAccess } from '../../src/xen/gnttab/backend.js';
import {
  checkGnttab,
  initialGnttabState,
  restoreGnttab,
  saveGnttab,
  UNMAPPED_GPFN,
} from '../../src/xen/gnttab/state.js';
import { grantFrameOffset } from '../../src/xen/gnttab/table.js';
import type { FrameSlots } from '../../src/xen/gnttab/slots.js';
import { MemoryLayout, SHARED_INFO_FRAME, SPECIAL_PFN_BASE, xenPageOffset } from '../../src/xen/memory/layout.js';
import { ARGS, fakeDomain, PAGE, VA, type FakeDomain } from '../helpers/xen.js';

const E = (name: keyof typeof Errno): bigint => BigInt(-Errno[name]);
const DOMID_SELF = 0x7ff0;
/** The first frame past a 4 MiB fakeDomain's RAM: guest-virtual VA.pastRam reaches it. */
const PAST_RAM = 0x400;

const gnt = (d: FakeDomain, op: number, uop: bigint | number, count = 1): bigint =>
  d.call(Hypercall.grant_table_op, [op, uop, count]);

function querySize(d: FakeDomain, dom = DOMID_SELF): { rc: bigint; nr: number; max: number; status: number } {
  const rc = gnt(
    d,
    GnttabOp.query_size,
    d.args(16, (v) => v.setUint16(0, dom, true)),
  );
  const v = d.out(16);
  return { rc, nr: v.getUint32(4, true), max: v.getUint32(8, true), status: v.getInt16(12, true) };
}

/** setup_table with the frame list right after the op; returns the status and the list. */
function setupTable(d: FakeDomain, nr: number, dom = DOMID_SELF): { rc: bigint; status: number; frames: bigint[] } {
  const list = ARGS + 64;
  d.ram.fill(0xaa, list, list + nr * 8);
  const ptr = d.args(d.is64 ? 24 : 16, (v) => {
    v.setUint16(0, dom, true);
    v.setUint32(4, nr, true);
    if (d.is64) v.setBigUint64(16, BigInt(list), true);
    else v.setUint32(12, list, true);
  });
  const rc = gnt(d, GnttabOp.setup_table, ptr);
  const frames = Array.from({ length: nr }, (_, i) =>
    d.is64 ? d.view.getBigUint64(list + i * 8, true) : BigInt(d.view.getUint32(list + i * 4, true)),
  );
  return { rc, status: d.view.getInt16(ARGS + 8, true), frames };
}

function mapFrame(d: FakeDomain, idx: number | bigint, gpfn: number | bigint): bigint {
  const ptr = d.args(d.is64 ? 24 : 16, (v) => {
    v.setUint16(0, DOMID_SELF, true);
    v.setUint32(4, 1, true); // XENMAPSPACE_grant_table
    if (d.is64) {
      v.setBigUint64(8, BigInt(idx), true);
      v.setBigUint64(16, BigInt(gpfn), true);
    } else {
      v.setUint32(8, Number(idx), true);
      v.setUint32(12, Number(gpfn), true);
    }
  });
  return d.call(Hypercall.memory_op, [XenMem.add_to_physmap, ptr]);
}

/** A recording FrameSlots (what would be KVM slot changes). */
function recordSlots(d: FakeDomain): string[] {
  const log: string[] = [];
  const slots: FrameSlots = {
    map: (f, g) => (log.push(`map ${f}@${g.toString(16)}`), true),
    unmap: (f) => void log.push(`unmap ${f}`),
  };
  (d.xen as { frameSlots: FrameSlots }).frameSlots = slots;
  return log;
}

test('query_size: one frame at first, max 64; other domains refused; count and -EFAULT', () => {
  const d = fakeDomain();
  assert.equal(querySize(d), { rc: 0n, nr: 1, max: 64, status: Gntst.okay });
  assert.is(querySize(d, 0).status, Gntst.permission_denied, 'dom 0 (the backends) is not ours');
  assert.is(querySize(d, 5).status, Gntst.bad_domain);
  assert.is(gnt(d, GnttabOp.query_size, ARGS, 2), E('EINVAL'));
  assert.is(gnt(d, GnttabOp.query_size, ARGS, 0xffffffff), E('EINVAL'), 'count negative as an int');
  assert.is(gnt(d, GnttabOp.query_size, VA.hole), E('EFAULT'));
});

for (const mode of ['64', 'compat'] as const) {
  test(`setup_table (${mode}): grows on demand, lists each frame's gpfn or INVALID_GFN`, () => {
    const d = fakeDomain({ mode });
    const invalid = mode === '64' ? 0xffff_ffff_ffff_ffffn : 0xffff_ffffn;
    let r = setupTable(d, 4);
    assert.is(r.rc, 0n);
    assert.is(r.status, Gntst.okay);
    assert.equal(r.frames, [invalid, invalid, invalid, invalid]);
    assert.is(querySize(d).nr, 4);
    assert.is(mapFrame(d, 2, PAST_RAM + 2), 0n);
    r = setupTable(d, 3);
    assert.equal(r.frames, [invalid, invalid, BigInt(PAST_RAM + 2)]);
    assert.is(querySize(d).nr, 4, 'never shrinks');
    assert.is(setupTable(d, 65).status, Gntst.general_error, 'past max_grant_frames');
    assert.is(querySize(d).nr, 4);
    assert.is(setupTable(d, 64).status, Gntst.okay);
    assert.is(querySize(d).nr, 64);
    assert.is(setupTable(d, 1, 0).status, Gntst.permission_denied);
    assert.is(setupTable(d, 1, 9).status, Gntst.bad_domain);
    assert.is(gnt(d, GnttabOp.setup_table, ARGS, 2), E('EINVAL'));
    assert.is(gnt(d, GnttabOp.setup_table, mode === '64' ? VA.hole : 0x7000_0000), E('EFAULT'));
  });
}

test('setup_table: an unwritable frame list is GNTST_bad_virt_addr', () => {
  const d = fakeDomain();
  const ptr = d.args(24, (v) => {
    v.setUint16(0, DOMID_SELF, true);
    v.setUint32(4, 1, true);
    v.setBigUint64(16, VA.readOnly, true);
  });
  assert.is(gnt(d, GnttabOp.setup_table, ptr), 0n);
  assert.is(d.out().getInt16(8, true), Gntst.bad_virt_addr);
});

test('get_version / set_version: v1 only; v2 is -ENOSYS, others -EINVAL; the version is written back', () => {
  const d = fakeDomain();
  const get = (dom = DOMID_SELF) => {
    const rc = gnt(
      d,
      GnttabOp.get_version,
      d.args(8, (v) => v.setUint16(0, dom, true)),
    );
    return { rc, version: d.out().getUint32(4, true) };
  };
  const set = (version: number) => {
    const rc = gnt(
      d,
      GnttabOp.set_version,
      d.args(4, (v) => v.setUint32(0, version, true)),
    );
    return { rc, version: d.out().getUint32(0, true) };
  };
  assert.equal(get(), { rc: 0n, version: 1 });
  assert.equal(get(0).rc, E('EPERM'));
  assert.equal(get(3).rc, E('ESRCH'));
  assert.equal(set(1), { rc: 0n, version: 1 });
  assert.equal(set(2), { rc: E('ENOSYS'), version: 1 });
  assert.equal(set(0), { rc: E('EINVAL'), version: 1 });
  assert.equal(set(3), { rc: E('EINVAL'), version: 1 });
  assert.equal(get(), { rc: 0n, version: 1 });
  assert.is(gnt(d, GnttabOp.set_version, VA.hole), E('EFAULT'));
  assert.is(gnt(d, GnttabOp.get_version, VA.hole), E('EFAULT'));
});

test('other sub-ops: -ENOSYS, each logged once by name', () => {
  const d = fakeDomain();
  for (const op of [GnttabOp.map_grant_ref, GnttabOp.copy, GnttabOp.dump_table, GnttabOp.get_status_frames, 99, 99])
    assert.is(gnt(d, op, ARGS), E('ENOSYS'), `op ${op}`);
  assert.equal([...d.warnings.keys()], ['unimpl-20-0', 'unimpl-20-5', 'unimpl-20-3', 'unimpl-20-9', 'unimpl-20-other']);
  assert.match(d.warnings.get('unimpl-20-5')!, /unimplemented grant_table_op GNTTABOP_copy \(5\)/);
});

test('add_to_physmap grant_table: the frame is readable and writable at its gpfn, outside RAM', () => {
  const d = fakeDomain();
  const log = recordSlots(d);
  assert.is(d.xen.phys.offsetOf(PAST_RAM * PAGE), -1);
  assert.is(mapFrame(d, 0, PAST_RAM), 0n);
  assert.equal(log, ['map 0@400']);
  assert.is(d.xen.phys.offsetOf(PAST_RAM * PAGE + 8, 8), grantFrameOffset(0) + 8);
  assert.is(d.xen.phys.offsetOf(PAST_RAM * PAGE + 4092, 8), -1, 'a range may not leave the frame');
  // The guest writes an entry through its own mapping; the emulator sees it in the frame.
  const bytes = new Uint8Array([1, 0, 0, 0, 0x34, 0x12, 0, 0]);
  assert.ok(d.env.mem.write(VA.pastRam + 16n, bytes));
  assert.is(d.xen.phys.getU32(grantFrameOffset(0) + 20), 0x1234);
  assert.equal([...d.env.mem.read(VA.pastRam + 16n, 8)!], [...bytes]);
});

test('add_to_physmap grant_table: grows the table, moves a frame, unhooks the one it lands on', () => {
  const d = fakeDomain();
  const log = recordSlots(d);
  assert.is(mapFrame(d, 5, PAST_RAM + 1), 0n);
  assert.is(querySize(d).nr, 6, 'grown to reach frame 5');
  assert.is(mapFrame(d, 5, PAST_RAM + 1), 0n, 'same place: nothing to do');
  assert.is(mapFrame(d, 5, PAST_RAM + 2), 0n, 'moved');
  assert.is(d.xen.phys.offsetOf((PAST_RAM + 1) * PAGE), -1, 'its old place is a hole');
  assert.is(mapFrame(d, 1, PAST_RAM + 2), 0n, 'frame 1 over frame 5');
  assert.is(d.xen.shared.grants.gpfnOf(5), -1);
  assert.is(d.xen.shared.grants.gpfnOf(1), PAST_RAM + 2);
  assert.equal(log, ['map 5@401', 'unmap 5', 'map 5@402', 'unmap 5', 'map 1@402']);
});

test('add_to_physmap grant_table: refused places and frames', () => {
  const d = fakeDomain();
  const log = recordSlots(d);
  assert.is(mapFrame(d, 64, PAST_RAM), E('EINVAL'), 'frame past the max');
  assert.is(mapFrame(d, 0x80000000n, PAST_RAM), E('EINVAL'), 'the v2 status-frame flag');
  assert.is(mapFrame(d, 1n << 40n, PAST_RAM), E('EINVAL'));
  assert.is(mapFrame(d, 0, 0x200), E('EINVAL'), 'over RAM');
  assert.is(mapFrame(d, 0, SPECIAL_PFN_BASE + 4), E('EINVAL'), 'over a special page');
  assert.is(mapFrame(d, 0, 0x8000_0000n), E('EINVAL'), 'beyond 8 TiB');
  assert.equal(log, []);
  assert.is(querySize(d).nr, 1, 'nothing grew');
  (d.xen as { frameSlots: FrameSlots }).frameSlots = { map: () => false, unmap: () => {} };
  assert.is(mapFrame(d, 0, PAST_RAM), E('EINVAL'), 'KVM said no');
  assert.is(d.xen.shared.grants.gpfnOf(0), -1);
});

test('add_to_physmap grant_table: compat layout', () => {
  const d = fakeDomain({ mode: 'compat' });
  assert.is(mapFrame(d, 3, PAST_RAM), 0n);
  assert.is(d.xen.shared.grants.gpfnOf(3), PAST_RAM);
  assert.is(mapFrame(d, 0x80000000, PAST_RAM), E('EINVAL'));
});

// --- the backend API ---

const REF_PAGE = 0x300;

/** Writes grant entry `ref` (in frame 0 or beyond) as the guest would. */
function grant(d: FakeDomain, ref: number, flags: number, domid = 0, frame = REF_PAGE): number {
  const at = grantFrameOffset(Math.floor(ref / 512)) + (ref % 512) * 8;
  d.xen.phys.setU32(at, (flags | (domid << 16)) >>> 0);
  d.xen.phys.setU32(at + 4, frame);
  return at;
}
const flagsOf = (d: FakeDomain, at: number): number => d.xen.phys.getU32(at) & 0xffff;

function backend(d: FakeDomain): GrantAccess {
  return new GrantAccess(d.xen.phys, d.xen.shared.grants);
}

test('backend map: read-write sets GTF_reading|GTF_writing, the view is the granted page, unmap clears', () => {
  const d = fakeDomain();
  const at = grant(d, 7, Gtf.permit_access);
  const b = backend(d);
  const r = b.map(7, false);
  assert.is(r.status, Gntst.okay);
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading | Gtf.writing);
  r.mapping!.page[3] = 0x5a;
  assert.is(d.ram[REF_PAGE * PAGE + 3], 0x5a);
  assert.is(b.unmap(r.mapping!), Gntst.okay);
  assert.is(flagsOf(d, at), Gtf.permit_access);
  assert.is(b.unmap(r.mapping!), Gntst.bad_handle, 'twice');
  assert.is(b.pinned, 0);
});

test('backend map: pins count; GTF_writing clears with the last writer, GTF_reading with the last pin', () => {
  const d = fakeDomain();
  const at = grant(d, 3, Gtf.permit_access);
  const b = backend(d);
  const ro = b.map(3, true).mapping!;
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading);
  const rw = b.map(3, false).mapping!;
  const rw2 = b.map(3, false).mapping!;
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading | Gtf.writing);
  b.unmap(rw);
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading | Gtf.writing);
  b.unmap(rw2);
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading);
  b.unmap(ro);
  assert.is(flagsOf(d, at), Gtf.permit_access);
});

test('backend map: every refusal and its GNTST code; a refusal leaves the flags as they were', () => {
  const d = fakeDomain();
  const b = backend(d);
  const cases: Array<[string, number, number, number, boolean, number]> = [
    // what, flags, domid, frame, readonly, status
    ['invalid entry', Gtf.invalid, 0, REF_PAGE, true, Gntst.general_error],
    ['accept_transfer', Gtf.accept_transfer, 0, REF_PAGE, true, Gntst.general_error],
    ['transitive', Gtf.transitive, 0, REF_PAGE, true, Gntst.general_error],
    ['granted to another domain', Gtf.permit_access, 5, REF_PAGE, true, Gntst.general_error],
    ['sub-page grants cannot be mapped', Gtf.permit_access | Gtf.sub_page, 0, REF_PAGE, true, Gntst.general_error],
    ['write map of a read-only grant', Gtf.permit_access | Gtf.readonly, 0, REF_PAGE, false, Gntst.general_error],
    ['frame outside RAM', Gtf.permit_access, 0, 0x7000, false, Gntst.bad_page],
  ];
  for (const [what, flags, domid, frame, readonly, status] of cases) {
    const at = grant(d, 9, flags, domid, frame);
    assert.is(b.map(9, readonly).status, status, what);
    assert.is(flagsOf(d, at), flags, `${what}: flags untouched`);
  }
  const ro = grant(d, 10, Gtf.permit_access | Gtf.readonly);
  assert.is(b.map(10, true).status, Gntst.okay, 'a read-only grant maps read-only');
  assert.is(flagsOf(d, ro), Gtf.permit_access | Gtf.readonly | Gtf.reading);
  assert.is(b.map(512, true).status, Gntst.bad_gntref, 'past the one frame the table has');
  assert.is(b.map(-1, true).status, Gntst.bad_gntref);
  assert.is(b.map(1.5, true).status, Gntst.bad_gntref);
});

test('backend map: entries in a grown table; a pinned entry keeps its page even if the guest rewrites it', () => {
  const d = fakeDomain();
  assert.is(mapFrame(d, 1, PAST_RAM), 0n);
  const at = grant(d, 600, Gtf.permit_access);
  const b = backend(d);
  const m = b.map(600, true).mapping!;
  d.xen.phys.setU32(at + 4, 0x301);
  d.ram[REF_PAGE * PAGE] = 9;
  assert.is(b.map(600, true).mapping!.page[0], 9, 'second pin: same page');
  b.unmap(m);
});

test('backend map: an entry the guest keeps changing is unstable (general error after 5 tries)', () => {
  const d = fakeDomain();
  const at = grant(d, 2, Gtf.permit_access);
  const phys = d.xen.phys;
  const real = phys.atomicCompareExchange32.bind(phys);
  let tries = 0;
  phys.atomicCompareExchange32 = (o, expected, value) => {
    tries++;
    phys.setU32(at, (phys.getU32(at) ^ (1 << 5)) >>> 0); // a guest toggling GTF_PWT each time
    return real(o, expected, value);
  };
  assert.is(backend(d).map(2, true).status, Gntst.general_error);
  assert.is(tries, 5);
});

test('backend copy: both directions, flags held only during the copy, every error', () => {
  const d = fakeDomain();
  const b = backend(d);
  const at = grant(d, 4, Gtf.permit_access);
  assert.is(b.copyTo(4, 100, new Uint8Array([1, 2, 3])), Gntst.okay);
  assert.equal([...d.ram.subarray(REF_PAGE * PAGE + 100, REF_PAGE * PAGE + 103)], [1, 2, 3]);
  assert.is(flagsOf(d, at), Gtf.permit_access, 'released');
  const into = new Uint8Array(3);
  assert.is(b.copyFrom(4, 100, into), Gntst.okay);
  assert.equal([...into], [1, 2, 3]);
  assert.is(b.copyTo(4, 4095, new Uint8Array(2)), Gntst.bad_copy_arg);
  assert.is(b.copyFrom(4, -1, into), Gntst.bad_copy_arg);
  assert.is(flagsOf(d, at), Gtf.permit_access, 'released after a bad range too');
  const ro = grant(d, 5, Gtf.permit_access | Gtf.readonly);
  assert.is(b.copyTo(5, 0, into), Gntst.general_error, 'write to a read-only grant');
  assert.is(b.copyFrom(5, 0, into), Gntst.okay);
  assert.is(flagsOf(d, ro), Gtf.permit_access | Gtf.readonly);
  grant(d, 6, Gtf.permit_access | Gtf.sub_page);
  assert.is(b.copyFrom(6, 0, into), Gntst.okay, 'copy may use a sub-page grant (v1: the whole page)');
  grant(d, 8, Gtf.permit_access, 3);
  assert.is(b.copyFrom(8, 0, into), Gntst.general_error, 'another domain');
  grant(d, 11, Gtf.permit_access, 0, 0x7000);
  assert.is(b.copyFrom(11, 0, into), Gntst.bad_page);
  assert.is(b.copyFrom(1000, 0, into), Gntst.bad_gntref);
  // A copy while mapped read-write keeps the mapping's flags.
  const m = b.map(4, false).mapping!;
  assert.is(b.copyFrom(4, 0, into), Gntst.okay);
  assert.is(flagsOf(d, at), Gtf.permit_access | Gtf.reading | Gtf.writing);
  b.unmap(m);
  assert.is(flagsOf(d, at), Gtf.permit_access);
});

// --- state ---

test('gnttab state: save, restore (slots re-created), and a fresh table for older streams', () => {
  const d = fakeDomain();
  assert.is(mapFrame(d, 2, PAST_RAM + 7), 0n);
  const st = saveGnttab(d.xen.shared);
  assert.equal(st, { version: 1, nr_frames: 3, frame_gpfn: [UNMAPPED_GPFN, UNMAPPED_GPFN, BigInt(PAST_RAM + 7)] });
  const e = fakeDomain();
  const log = recordSlots(e);
  assert.is(mapFrame(e, 0, PAST_RAM), 0n, 'a rehearsal mapping');
  restoreGnttab(e.xen.shared, e.xen.frameSlots, st, e.xen.phys.layout);
  assert.equal(log, ['map 0@400', 'unmap 0', 'map 2@407']);
  assert.equal(saveGnttab(e.xen.shared), st);
  assert.is(e.xen.phys.offsetOf((PAST_RAM + 7) * PAGE), grantFrameOffset(2));
  assert.equal(initialGnttabState(), saveGnttab(fakeDomain().xen.shared));
});

test('gnttab state check: hostile tables are refused with the field named', () => {
  const layout = new MemoryLayout(256 << 20);
  const ok = { version: 1, nr_frames: 2, frame_gpfn: [0x10000n, UNMAPPED_GPFN] };
  checkGnttab(ok, layout);
  const bad: Array<[object, RegExp]> = [
    [{ version: 2 }, /gnttab\.version: grant table version 2/],
    [{ version: 0 }, /gnttab\.version/],
    [{ nr_frames: 0, frame_gpfn: [] }, /gnttab\.nr_frames: 0 frames/],
    [{ nr_frames: 65, frame_gpfn: Array(65).fill(UNMAPPED_GPFN) }, /gnttab\.nr_frames: 65/],
    [{ frame_gpfn: [UNMAPPED_GPFN] }, /gnttab\.frame_gpfn: has 1 entries/],
    [{ frame_gpfn: [0x100n, UNMAPPED_GPFN] }, /frame_gpfn\[0\]: gpfn 0x100 is guest RAM/],
    [{ frame_gpfn: [BigInt(SPECIAL_PFN_BASE + 7), UNMAPPED_GPFN] }, /frame_gpfn\[0\]: .* is a special page/],
    [{ frame_gpfn: [0x10000n, 0x10000n] }, /frame_gpfn\[1\]: gpfn 0x10000 is also where frame 0 is mapped/],
    [{ frame_gpfn: [1n << 40n, UNMAPPED_GPFN] }, /frame_gpfn\[0\]: .* beyond/],
  ];
  for (const [change, re] of bad) assert.throws(() => checkGnttab({ ...ok, ...change }, layout), re);
});

test('shared_info outside RAM (as GRUB places it): the emulator page backs it, events reach it, a snapshot keeps it', () => {
  const d = fakeDomain();
  const log = recordSlots(d);
  const gpa = d.placeSharedInfo(PAST_RAM + 1);
  assert.is(d.xen.shared.grants.gpfnOf(SHARED_INFO_FRAME), PAST_RAM + 1);
  assert.equal(log, [`map ${SHARED_INFO_FRAME}@401`]);
  const at = d.xen.phys.offsetOf(gpa, 4096);
  assert.is(at, xenPageOffset(72), 'the last emulator page');
  d.xen.shared.setPort(3, 5, 0, 0);
  d.xen.setPending(3);
  assert.ok(d.xen.isPending(3), 'pending bits live in that page');
  assert.is(mapFrame(d, 0, PAST_RAM + 1), 0n, 'a grant frame mapped over it unhooks it');
  assert.is(d.xen.shared.grants.gpfnOf(SHARED_INFO_FRAME), -1);
  d.placeSharedInfo(PAST_RAM + 2);
  const st = saveGnttab(d.xen.shared);
  const e = fakeDomain();
  const elog = recordSlots(e);
  e.xen.shared.domain.sharedInfoGpa = BigInt((PAST_RAM + 2) * 4096);
  restoreGnttab(e.xen.shared, e.xen.frameSlots, st, e.xen.phys.layout);
  assert.ok(elog.includes(`map ${SHARED_INFO_FRAME}@402`), elog.join(', '));
  d.placeSharedInfo(0x200);
  assert.is(d.xen.shared.grants.gpfnOf(SHARED_INFO_FRAME), -1, 'back in RAM: the page is taken away');
});

test.run();
