// The guest-physical memory layout: RAM below the 32-bit hole, the rest from
// 4 GiB, and reads and writes through views of at most 4 GiB.  No KVM needed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CLEAR_RANGE_PAGES } from '../../src/migrate/live/dirty-log.js';
import { GuestPhys } from '../../src/xen/memory/guest-phys.js';
import {
  HIGH_RAM_BASE,
  LOW_RAM_END,
  MemoryLayout,
  memSizeProblem,
  XEN_PAGES_OFFSET,
} from '../../src/xen/memory/layout.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

test('a machine that fits below the hole is one flat region, as before the layout existed', () => {
  for (const size of [16 * MiB, GiB, 3 * GiB, LOW_RAM_END]) {
    const l = new MemoryLayout(size);
    assert.equal(l.regions, [{ gpa: 0, offset: 0, size }]);
    assert.is(l.offsetOf(size - 4096, 4096), size - 4096);
    assert.is(l.offsetOf(size - 4095, 4096), -1);
    assert.is(l.offsetOf(HIGH_RAM_BASE), -1);
  }
});

test('RAM above the hole starts at 4 GiB and follows the low region in RAM offsets', () => {
  const l = new MemoryLayout(5 * GiB);
  assert.equal(l.regions, [
    { gpa: 0, offset: 0, size: LOW_RAM_END },
    { gpa: HIGH_RAM_BASE, offset: LOW_RAM_END, size: 5 * GiB - LOW_RAM_END },
  ]);
  assert.is(l.offsetOf(LOW_RAM_END - 8, 8), LOW_RAM_END - 8);
  assert.is(l.offsetOf(LOW_RAM_END - 8, 16), -1, 'a range running into the hole');
  assert.is(l.offsetOf(0xfee00000), -1, 'the LAPIC page is not RAM');
  assert.is(l.offsetOf(HIGH_RAM_BASE), LOW_RAM_END);
  assert.is(l.offsetOf(BigInt(HIGH_RAM_BASE) + 4096n, 4096), LOW_RAM_END + 4096);
  assert.is(l.offsetOf(l.end - 4096, 4096), 5 * GiB - 4096);
  assert.is(l.offsetOf(l.end, 1), -1);
  assert.is(l.gpaOf(LOW_RAM_END + 4096), HIGH_RAM_BASE + 4096);
  assert.is(l.gpaOf(4096), 4096);
  assert.ok(l.isRamFrame(HIGH_RAM_BASE / 4096));
  assert.not.ok(l.isRamFrame(LOW_RAM_END / 4096));
  assert.equal(l.e820(), [
    [0, 0xa0000, 1],
    [0xa0000, 0x100000 - 0xa0000, 2],
    [0x100000, LOW_RAM_END - 0x100000, 1],
    [0xfeff8000, 0x8000, 2],
    [HIGH_RAM_BASE, 5 * GiB - LOW_RAM_END, 1],
  ]);
});

test('the special pages: emulator pages after RAM in offsets, not RAM frames', () => {
  const l = new MemoryLayout(GiB);
  assert.is(l.offsetOf(0xfeffc000, 4096), XEN_PAGES_OFFSET + 4 * 4096);
  assert.is(l.offsetOf(0xfeff8000 - 1, 2), -1, 'a range that starts in the hole');
  assert.is(l.offsetOf(0xfefff000, 4097), -1, 'a range that runs past them');
  assert.not.ok(l.isRamFrame(0xfeffc));
});

test('guest-chosen addresses never throw', () => {
  const l = new MemoryLayout(GiB);
  for (const gpa of [-1, NaN, Infinity, 2 ** 60, -1n, 0xffff_ffff_ffff_ffffn, 1n << 52n])
    assert.is(l.offsetOf(gpa as number | bigint, 8), -1);
  assert.not.ok(l.isRamFrame(0xffff_ffff_ffff_ffffn));
});

test('sizes: 4 MiB to 1 TiB in whole 2 MiB pages', () => {
  assert.is(memSizeProblem(16 * MiB), null);
  assert.is(memSizeProblem(64 * GiB), null);
  assert.is(memSizeProblem(2 ** 40), null);
  assert.is(memSizeProblem(4 * MiB), null);
  assert.ok(memSizeProblem(2 * MiB));
  assert.ok(memSizeProblem(16 * MiB + 4096));
  assert.ok(memSizeProblem(2 ** 40 + 2 * MiB));
  assert.ok(memSizeProblem(0));
  assert.ok(memSizeProblem(Number.NaN));
});

test('the low region ends on a dirty-log clear range, so no range spans two memory slots', () => {
  assert.is((LOW_RAM_END / 4096) % CLEAR_RANGE_PAGES, 0);
  assert.is((LOW_RAM_END / 4096) % 64, 0);
});

test('GuestPhys reads and writes across its 4 GiB views', () => {
  // Untouched typed-array memory is mapped lazily, so 4 GiB + 8 MiB costs little.
  const low = new Uint8Array(2 ** 32);
  const high = new Uint8Array(8 * MiB);
  const p = new GuestPhys(new MemoryLayout(2 ** 32 + 8 * MiB), [low, high]);
  const at = 2 ** 32 + 4096;
  p.setU64(at, 0x1122334455667788n);
  assert.is(high[4096], 0x88);
  assert.is(p.getU64(at), 0x1122334455667788n);
  assert.is(p.atomicOr32(at + 8, 0x10), 0);
  assert.is(p.atomicLoad32(at + 8), 0x10);
  assert.is(p.atomicAnd64(at, 0xffn), 0x1122334455667788n);
  assert.is(p.getU64(at), 0x88n);
  assert.is(p.atomicExchange8(at + 100, 7), 0);
  assert.is(p.bytes(at, 128)[100], 7);
  p.setU32(LOW_RAM_END - 4, 0xdeadbeef);
  assert.is(p.getU32(LOW_RAM_END - 4), 0xdeadbeef);
  assert.is(p.offsetOf(HIGH_RAM_BASE + 4096 + 100 * 4096), LOW_RAM_END + 4096 + 100 * 4096);
});

test.run();
