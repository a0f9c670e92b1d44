// A ballooned guest through a snapshot: the holes travel in the xen_memory
// section (their pages as zero pages, not data), the restored guest in a new
// process still has them as holes and populates them again as zero pages.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { saveSnapshot } from '../../../src/migrate/snapshot/save.js';
import { loadSnapshot } from '../../../src/inspect/index.js';
import { bootGuest } from '../../helpers/guest.js';
import { BIN } from '../../helpers/cli.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip balloon snapshot: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('balloon');
test.after(cleanup);

kvmTest('balloon hold: snapshotted with 64 holes, restored in a new process, the holes are still holes', async () => {
  const g = bootGuest('balloon hold 2s', { vcpus: 2 });
  const file = join(dir, 'balloon.xks');
  try {
    await g.waitFor(/balloon: holes ready at 0x[0-9a-f]+\n/, 10000);
    await g.machine.pause();
    assert.is(g.machine.xen.memory.ballooned, 64);
    await saveSnapshot(g.machine, file);
  } finally {
    await g.machine.destroy();
  }
  // The program filled the pages before giving them back: the file holds them as zero pages.
  const at = Number(/balloon: holes ready at (0x[0-9a-f]+)/.exec(g.console())![1]);
  const snap = await loadSnapshot(file);
  try {
    const holes = await snap.pages.readGuest(at, 64 * 4096);
    assert.ok(
      holes.every((b) => b === 0),
      'the holes were saved as zero pages',
    );
  } finally {
    await snap.close();
  }
  const inspect = spawnSync(process.execPath, [BIN, 'inspect', file, '--section', 'xen_memory'], { encoding: 'utf8' });
  assert.is(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, /ballooned out: 64 pages \(0\.25 MiB\) in 1 hole\(s\)/);
  const r = spawnSync(process.execPath, [BIN, 'restore', file], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr + r.stdout.slice(-2000));
  assert.match(r.stdout, /ok - after the wait: current_reservation still 64 pages lower/);
  assert.match(r.stdout, /ok - the populated pages are zero/);
  assert.match(r.stdout, /RESULT: PASS/);
});

test.run();
