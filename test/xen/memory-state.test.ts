// The xen_memory section: a reservation saved and restored into a fresh one
// is the same (holes split at the 4 GiB hole), and every check refuses what
// the reservation ops could never have produced.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FormatError } from '../../src/errors.js';
import { LOW_RAM_END, MemoryLayout } from '../../src/xen/memory/layout.js';
import { MemoryReservation, memoryBufferBytes } from '../../src/xen/memory/reservation.js';
import { checkMemory, restoreMemory, saveMemory, type XenMemoryState } from '../../src/xen/memory/state.js';

const reservation = (bytes: number) => new MemoryReservation(new SharedArrayBuffer(memoryBufferBytes(bytes)), bytes);

test('save → restore: holes, unmapped pages and the guest map come back; a hole across 4 GiB is two', () => {
  const bytes = LOW_RAM_END + (64 << 20);
  const layout = new MemoryLayout(bytes);
  const a = reservation(bytes);
  const lastLow = LOW_RAM_END / 4096 - 1;
  a.withLock(() => {
    for (const p of [5, 6, 7, lastLow - 1, lastLow, lastLow + 1, lastLow + 2]) a.setBallooned(p, true);
  });
  a.unmapped = 2;
  a.setE820([[0n, 0x1000n, 1]]);
  const st = saveMemory(a, layout);
  assert.equal(st.holes, [
    { first_pfn: 5n, count: 3n },
    { first_pfn: BigInt(lastLow - 1), count: 2n },
    { first_pfn: 0x100000n, count: 2n },
  ]);
  assert.is(st.ballooned_pages, 7n);
  checkMemory(st, layout);
  const b = reservation(bytes);
  restoreMemory(b, layout, st);
  assert.equal(b.pageRuns(), a.pageRuns());
  assert.is(b.runs, 2);
  assert.is(b.totPages, a.totPages);
  assert.equal(b.guestE820(), [[0n, 0x1000n, 1]]);
  assert.equal(saveMemory(b, layout), st);
});

test('check refuses holes outside RAM, overlapping or unsorted holes, wrong totals, a map without guest_e820', () => {
  const layout = new MemoryLayout(64 << 20);
  const base: XenMemoryState = {
    ballooned_pages: 4n,
    unmapped_pages: 0n,
    nr_holes: 2,
    holes: [
      { first_pfn: 0x100n, count: 2n },
      { first_pfn: 0x200n, count: 2n },
    ],
    guest_e820: false,
    nr_e820: 0,
    e820: [],
  };
  checkMemory(base, layout);
  const bad = (edit: (s: XenMemoryState) => void, why: RegExp) => {
    const s = structuredClone(base);
    edit(s);
    assert.throws(
      () => checkMemory(s, layout),
      (e: unknown) => e instanceof FormatError && why.test(e.message),
    );
  };
  bad((s) => (s.holes[1]!.first_pfn = 0x101n), /holes\[1\]\.first_pfn: 0x101 overlaps/);
  bad((s) => (s.holes[1]!.first_pfn = 0x102n), /touches/);
  bad((s) => (s.holes[0]!.count = 0n), /holes\[0\]\.count: is 0/);
  bad((s) => (s.holes[1]!.first_pfn = 0x3fffn), /holes\[1\]: frames 0x3fff\+2 are not RAM of this 64 MiB machine/);
  bad((s) => (s.holes[1]!.first_pfn = 0xfeffcn), /not RAM/);
  bad((s) => (s.holes[1]!.first_pfn = 1n << 60n), /not RAM/);
  bad((s) => (s.ballooned_pages = 5n), /ballooned_pages: is 5, the holes hold 4/);
  bad((s) => (s.unmapped_pages = 5n), /unmapped_pages: 5 would take the reservation beyond/);
  bad((s) => {
    s.nr_e820 = 1;
    s.e820 = [{ addr: 0n, size: 1n, type: 1 }];
  }, /nr_e820: is not 0/);
});

test.run();
