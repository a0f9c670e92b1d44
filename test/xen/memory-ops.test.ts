// The memory_op reservation ops and memory maps against a fake domain: what
// a balloon driver sees (done counts, never an errno), Xen's limits and
// continuations, and the hostile inputs (huge nr_extents, bad frames,
// faulting lists, another domain).  On KVM: guest-programs.kvm.test.ts
// (`balloon`, `memmap`).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno, Hypercall, MEMOP_EXTENT_SHIFT, XenMem, XENMEMF_populate_on_demand } from '../../src/xen/abi.js';
import { EXTENTS_PER_ENTRY } from '../../src/xen/memory/ops.js';
import { MAX_BALLOON_RUNS } from '../../src/xen/memory/reservation.js';
import { ARGS, fakeDomain, VA, type FakeDomain } from '../helpers/xen.js';

const E = (name: keyof typeof Errno): bigint => BigInt(-Errno[name]);
const DOMID_SELF = 0x7ff0;
/** Where the extent list goes (mapped, after the 64 bytes of arguments). */
const LIST = ARGS + 0x1000;
const RAM_PAGES = (4 << 20) / 4096;

interface Res {
  list?: bigint;
  nr: number | bigint;
  order?: number;
  flags?: number;
  domid?: number;
}

/** Writes the frame list and struct xen_memory_reservation, issues `op`; returns the done count. */
function reservation(d: FakeDomain, op: number, r: Res, frames: number[] = []): bigint {
  frames.forEach((f, i) => d.view.setBigUint64(LIST + i * 8, BigInt(f), true));
  const arg = d.args(32, (v) => {
    v.setBigUint64(0, r.list ?? BigInt(LIST), true);
    v.setBigUint64(8, BigInt(r.nr), true);
    v.setUint32(16, r.order ?? 0, true);
    v.setUint32(20, r.flags ?? 0, true);
    v.setUint16(24, r.domid ?? DOMID_SELF, true);
  });
  return d.call(Hypercall.memory_op, [op, arg]);
}

const selfFigure = (d: FakeDomain, op: number, domid = DOMID_SELF): bigint =>
  d.call(Hypercall.memory_op, [op, d.args(2, (v) => v.setUint16(0, domid, true))]);

test('decrease_reservation gives pages back: they read zero, the reservation shrinks, the count is returned', () => {
  const d = fakeDomain();
  d.ram.fill(0x5a, 0x200000, 0x204000);
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 3 }, [0x200, 0x201, 0x203]), 3n);
  assert.is(d.ram[0x200000], 0, 'released pages read zero');
  assert.is(d.ram[0x202000], 0x5a, 'a page not named keeps its contents');
  assert.is(selfFigure(d, XenMem.current_reservation), BigInt(RAM_PAGES - 3));
  assert.is(selfFigure(d, XenMem.maximum_reservation), BigInt(RAM_PAGES));
  const res = d.xen.shared.memory;
  assert.equal(res.pageRuns(), [
    { first: 0x200, count: 2 },
    { first: 0x203, count: 1 },
  ]);
  assert.is(res.runs, 2);
});

test('decrease_reservation stops at the first frame that is not populated RAM', () => {
  const d = fakeDomain();
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1 }, [0x300]), 1n);
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 3 }, [0x301, 0x300, 0x302]), 1n, 'already given back');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 2 }, [0x302, RAM_PAGES]), 1n, 'past the end of RAM');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1 }, [0xfeffc]), 0n, 'a special page is not RAM');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1, order: 2 }, [RAM_PAGES - 2]), 0n);
  assert.ok(d.xen.shared.memory.isBallooned(RAM_PAGES - 2), 'pages of an extent before the bad one stay given back');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1, order: 10 }, [0x100]), 0n, 'order above 9');
  assert.is(selfFigure(d, XenMem.current_reservation), BigInt(RAM_PAGES - 3 - 2));
  const big = fakeDomain({ memBytes: 8 << 20 });
  assert.is(reservation(big, XenMem.decrease_reservation, { nr: 1, order: 9 }, [0x400]), 1n, 'order 9: 2 MiB');
  assert.is(big.xen.shared.memory.ballooned, 512);
});

test('populate_physmap refills holes with zero pages, whole extents, within the reservation', () => {
  const d = fakeDomain();
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1 }, [0x200]), 0n, 'a populated frame: nothing to add');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1, order: 2 }, [0x200]), 1n);
  d.ram.fill(0x77, 0x200000, 0x201000); // the guest writes into its hole anyway
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1, order: 2 }, [0x201]), 0n, 'misaligned extent');
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1, order: 3 }, [0x200]), 0n, 'half of it is populated');
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 2 }, [0x201, 0x201]), 1n, 'the second time it is populated');
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 3 }, [0x200, 0x202, 0x203]), 3n);
  assert.is(d.ram[0x200000], 0, 'a populated page is zero');
  assert.is(d.xen.shared.memory.ballooned, 0);
  assert.is(selfFigure(d, XenMem.current_reservation), BigInt(RAM_PAGES));
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1 }, [0xfeffc]), 0n, 'not RAM of this machine');
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1 }, [1 << 40]), 0n);
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1 }, [0x200]), 1n);
  assert.is(
    reservation(d, XenMem.populate_physmap, { nr: 1, order: 12, flags: XENMEMF_populate_on_demand }, [0x200]),
    0n,
    'populate-on-demand allows larger orders, but the extent is not a hole',
  );
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1, flags: XENMEMF_populate_on_demand }, [0x200]), 1n);
});

test('increase_reservation grants pages an HVM guest cannot see, up to the maximum', () => {
  const d = fakeDomain();
  assert.is(reservation(d, XenMem.increase_reservation, { nr: 1, list: 0n }), 0n, 'nothing given back: at the maximum');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1, order: 2 }, [0x200]), 1n);
  assert.is(reservation(d, XenMem.increase_reservation, { nr: 8, list: 0n }), 4n, 'four order-0 extents fit');
  assert.is(selfFigure(d, XenMem.current_reservation), BigInt(RAM_PAGES));
  assert.is(reservation(d, XenMem.populate_physmap, { nr: 1 }, [0x200]), 0n, 'the reservation is full');
  assert.is(d.xen.shared.memory.unmapped, 4);
});

test('reservation ops: bad arguments answer the done count, never an errno', () => {
  const d = fakeDomain();
  const dec = XenMem.decrease_reservation;
  assert.is(d.call(Hypercall.memory_op, [dec, VA.hole]), 0n, 'unreadable struct');
  assert.is(
    d.call(Hypercall.memory_op, [dec | (5 << MEMOP_EXTENT_SHIFT), VA.hole]),
    5n,
    'a continuation keeps its count',
  );
  assert.is(reservation(d, dec, { nr: 1, domid: 3 }, [0x200]), 0n, 'another domain');
  assert.is(reservation(d, dec, { nr: 1, list: BigInt(VA.hole) }), 0n, 'unreadable list');
  assert.is(reservation(d, dec, { nr: 1, flags: 12 }, [0x200]), 0n, 'address_bits <= PAGE_SHIFT');
  assert.is(reservation(d, dec, { nr: 1n << 40n }, [0x200]), 0n, 'nr_extents beyond a continuation');
  assert.is(reservation(d, dec, { nr: 2 }, [0x200, 0x201]), 2n);
  d.call(Hypercall.memory_op, [dec | (7 << MEMOP_EXTENT_SHIFT), ARGS]);
  assert.is(
    d.call(Hypercall.memory_op, [dec | (7 << MEMOP_EXTENT_SHIFT), ARGS]),
    7n,
    'start beyond nr_extents: returned as is',
  );
});

test('a huge request is served in bounded steps: continuations carry the progress', () => {
  const d = fakeDomain({ memBytes: 16 << 20 });
  const n = 3 * EXTENTS_PER_ENTRY + 5;
  const frames = Array.from({ length: n }, (_, i) => 0x400 + i);
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: n }, frames), BigInt(n));
  assert.is(d.restarts, 3, 'three continuations');
  d.restarts = 0;
  assert.is(reservation(d, XenMem.populate_physmap, { nr: n }, frames), BigInt(n));
  assert.is(d.restarts, 3);
  // 2^26 - 1 extents whose list runs off guest RAM after one entry: one done, then it stops.
  const small = fakeDomain();
  small.view.setBigUint64(0x3ffff8, 0x250n, true);
  assert.is(reservation(small, XenMem.decrease_reservation, { nr: 0x3ffffff, list: 0x3ffff8n }), 1n);
  assert.is(small.restarts, 0);
});

test('the number of separate holes is bounded', () => {
  const d = fakeDomain({ memBytes: 1 << 30 });
  const res = d.xen.shared.memory;
  res.withLock(() => {
    for (let i = 0; i < MAX_BALLOON_RUNS; i++) res.setBallooned(0x1000 + 2 * i, true);
  });
  assert.is(res.runs, MAX_BALLOON_RUNS);
  const beyond = 0x1000 + 2 * MAX_BALLOON_RUNS + 1;
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1 }, [beyond]), 0n, 'a new hole is refused');
  assert.is(reservation(d, XenMem.decrease_reservation, { nr: 1 }, [0x1001]), 1n, 'joining two holes is fine');
  assert.is(res.runs, MAX_BALLOON_RUNS - 1);
});

test('current/maximum_reservation, maximum_gpfn, maximum_ram_page', () => {
  const d = fakeDomain();
  assert.is(selfFigure(d, XenMem.current_reservation, 5), E('ESRCH'));
  assert.is(d.call(Hypercall.memory_op, [XenMem.current_reservation, VA.hole]), E('EFAULT'));
  assert.is(d.call(Hypercall.memory_op, [XenMem.maximum_reservation | (1 << MEMOP_EXTENT_SHIFT), ARGS]), E('EINVAL'));
  assert.is(selfFigure(d, XenMem.maximum_gpfn), 0xfeffen + 1n, 'the last special page');
  assert.is(d.call(Hypercall.memory_op, [XenMem.maximum_ram_page, 0]), BigInt(RAM_PAGES));
});

test('set_memory_map: the guest replaces the map memory_map returns; limits and errors', () => {
  const d = fakeDomain();
  const setMap = (
    entries: Array<[bigint, bigint, number]>,
    opts: { nr?: number; domid?: number; buf?: bigint } = {},
  ) => {
    entries.forEach(([a, s, t], i) => {
      d.view.setBigUint64(LIST + i * 20, a, true);
      d.view.setBigUint64(LIST + i * 20 + 8, s, true);
      d.view.setUint32(LIST + i * 20 + 16, t, true);
    });
    const arg = d.args(24, (v) => {
      v.setUint16(0, opts.domid ?? DOMID_SELF, true);
      v.setUint32(8, opts.nr ?? entries.length, true);
      v.setBigUint64(16, opts.buf ?? BigInt(LIST), true);
    });
    return d.call(Hypercall.memory_op, [XenMem.set_memory_map, arg]);
  };
  const getMap = (cap = 8): bigint => {
    const buf = ARGS + 0x2000;
    const arg = d.args(16, (v) => {
      v.setUint32(0, cap, true);
      v.setBigUint64(8, BigInt(buf), true);
    });
    return d.call(Hypercall.memory_op, [XenMem.memory_map, arg]);
  };
  assert.is(getMap(), 0n);
  assert.is(d.out().getUint32(0, true), 4, "the layout's e820 first");
  assert.is(setMap([[0n, 0x200000n, 1]], { nr: 1025 }), E('EINVAL'), 'more than E820MAX');
  assert.is(setMap([[0n, 0x200000n, 1]], { domid: 4 }), E('ESRCH'));
  assert.is(setMap([], { nr: 2, buf: BigInt(VA.hole) }), E('EFAULT'));
  assert.is(d.call(Hypercall.memory_op, [XenMem.set_memory_map, VA.hole]), E('EFAULT'));
  assert.is(
    setMap([
      [0n, 0x9f000n, 1],
      [0x100000n, 0x300000n, 1],
      [0x12345n, 7n, 99],
    ]),
    0n,
  );
  assert.is(getMap(), 0n);
  assert.is(d.out().getUint32(0, true), 3, 'the guest map, kept unchecked');
  assert.is(d.view.getUint32(ARGS + 0x2000 + 40 + 16, true), 99);
  assert.is(getMap(1), 0n);
  assert.is(d.out().getUint32(0, true), 1, 'as many as the buffer holds');
  assert.is(setMap([]), 0n);
  assert.is(getMap(), E('ENOSYS'), 'an empty map is no map, as on Xen');
});

test.run();
