// Lazy restore (src/migrate/ram/load-lazy.ts, native/lazy-ram.c): guest memory
// arrives through userfaultfd after the machine is built.  These tests read
// every page of a restored machine before its guest ever runs, so each page
// comes in through a fault served by the native thread, and compare it with
// the memory that was saved; then they let the guest run, so the rest is
// copied in behind it, and compare again.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { restoreSnapshot, saveSnapshot, type RestorePhase } from '../../../src/migrate/snapshot/save.js';
import { lazyRestoreAvailable } from '../../../src/migrate/ram/load-lazy.js';
import { listRamRuns } from '../../../src/migrate/ram/page-index.js';
import { xenkvmSync } from '../../helpers/cli.js';
import { bootGuest } from '../../helpers/guest.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

const skip =
  kvmSkipReason() ??
  (lazyRestoreAvailable() ? null : 'no native helper or no userfaultfd: restores load memory eagerly');
if (skip) console.log(`  skip lazy restore: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('lazy');
const MiB = 1 << 20;
/** The fill program's pages start here; below are the image and the emulator's pages (shared_info, time areas) that a restore rewrites. */
const FILL_AT = 4 * MiB;

let file = '';
let saved: Uint8Array = new Uint8Array(0);

kvmTest('a 64 MiB guest with a quarter of its pages random is saved', async () => {
  const g = bootGuest('fill 25', { vcpus: 1, mem: 64 * MiB });
  try {
    await g.waitFor('fill: 25%', 30_000);
    await g.machine.pause();
    saved = Uint8Array.from(g.machine.ram.bytes);
    file = join(dir, 'fill.xks');
    const s = await saveSnapshot(g.machine, file);
    assert.ok(s.dataPages > 3000, `about 15 MiB of random pages stored (${s.dataPages})`);
  } finally {
    await g.machine.destroy();
  }
});

function differingPages(a: Uint8Array, b: Uint8Array, from: number): number[] {
  const bad: number[] = [];
  for (let off = from; off < a.length; off += 4096) {
    if (Buffer.compare(a.subarray(off, off + 4096), b.subarray(off, off + 4096)) !== 0) bad.push(off / 4096);
  }
  return bad;
}

kvmTest('lazily restored memory reads back as saved, page by page through faults, before the guest runs', async () => {
  const phases: RestorePhase[] = [];
  const m = await restoreSnapshot(file, { console: () => {}, log: () => {}, onPhase: (p) => phases.push(p) });
  try {
    assert.ok(phases.includes('lazy'), `the lazy path was taken: ${phases.join(' ')}`);
    assert.not.ok(phases.includes('filled'), 'nothing is copied in before the guest runs but what is touched');
    assert.equal(
      differingPages(saved, m.ram.bytes, FILL_AT),
      [],
      'every page above 4 MiB, stored or zero, reads as saved',
    );
    assert.ok(
      differingPages(saved, m.ram.bytes, 0).length <= 8,
      "below 4 MiB only the emulator's own pages may differ",
    );
  } finally {
    await m.destroy(); // stops the native thread with most of memory never prefetched
  }
});

kvmTest('once the guest runs the rest comes in behind it, and memory is as saved', async () => {
  const phases: RestorePhase[] = [];
  let filled!: () => void;
  const whenFilled = new Promise<void>((r) => (filled = r));
  const m = await restoreSnapshot(file, {
    console: () => {},
    log: () => {},
    onPhase: (p) => {
      phases.push(p);
      if (p === 'filled') filled();
    },
  });
  try {
    m.start();
    await m.whenRunning();
    await Promise.race([
      whenFilled,
      new Promise((_, reject) => setTimeout(() => reject(new Error('memory not filled within 20 s')), 20_000)),
    ]);
    await m.pause();
    assert.equal(differingPages(saved, m.ram.bytes, FILL_AT), [], "the idle fill guest's pages are all there");
  } finally {
    await m.destroy();
  }
});

kvmTest(
  'a lazily restored guest saved over its own file before its memory is in: the new file holds the same pages',
  async () => {
    const copy = join(dir, 'again.xks');
    writeFileSync(copy, readFileSync(file));
    const m = await restoreSnapshot(copy, { console: () => {}, log: () => {} });
    try {
      // The save scans every page (each a fault served from the old file) and renames the new file over it.
      await saveSnapshot(m, copy);
    } finally {
      await m.destroy();
    }
    const again = await restoreSnapshot(copy, { console: () => {}, log: () => {}, memory: 'eager' });
    try {
      assert.equal(differingPages(saved, again.ram.bytes, FILL_AT), []);
    } finally {
      await again.destroy();
    }
  },
);

kvmTest(
  '--eager and the lazy default restore the same pages; a flipped data bit is refused by both before any guest runs',
  async () => {
    const m = await restoreSnapshot(file, { console: () => {}, log: () => {}, memory: 'eager' });
    try {
      assert.equal(differingPages(saved, m.ram.bytes, FILL_AT), []);
    } finally {
      await m.destroy();
    }
    const runs = await listRamRuns(file, (64 * MiB) / 4096);
    const run = runs.runs.find((r) => r.fileOffset !== null && r.gpfn * 4096 >= FILL_AT)!;
    const bytes = readFileSync(file);
    bytes[run.fileOffset! + 123]! ^= 0x04;
    const flipped = join(dir, 'flipped.xks');
    writeFileSync(flipped, bytes);
    for (const args of [[], ['--eager']]) {
      const r = xenkvmSync(['restore', flipped, ...args], 30_000);
      assert.is(r.status, 2, `restore ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /RAM_PAGES record at offset \d+: body checksum mismatch/);
      assert.is(r.stderr.trim().split('\n').length, 1, 'one line');
      assert.not.match(r.stdout, /soak|fill|tick/, 'no guest output');
    }
  },
);

test.after(cleanup);
test.run();
