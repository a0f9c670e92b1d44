// Grant tables on real KVM: the test guest's `gnttab` program (frames mapped
// past RAM through their own KVM slots, entries written and read back), the
// backend grant API on the entries that guest wrote, and the table carried by
// a snapshot restored in a new process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Gntst, Gtf } from '../../src/xen/abi.js';
import { GrantAccess } from '../../src/xen/gnttab/backend.js';
import { saveSnapshot } from '../../src/migrate/snapshot/save.js';
import { bootGuest, runGuest } from '../helpers/guest.js';
import { BIN } from '../helpers/cli.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { tempDir } from '../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip gnttab: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('gnttab');
test.after(cleanup);

function assertPassed(out: string, what: string): void {
  assert.ok(out.includes('RESULT: PASS'), `${what} did not pass:\n${out.slice(-3000)}`);
  assert.not.match(out, /not ok -/, what);
}

kvmTest('gnttab: every op, frames past RAM, entries through the mapping, errors', async () => {
  const { console: out, outcome } = await runGuest('gnttab', { ms: 30000 });
  assertPassed(out, 'gnttab');
  assert.match(out, /# \d+ checks, 0 failed/);
  assert.equal(outcome, { kind: 'shutdown', reason: 'poweroff' });
});

kvmTest(
  'gnttab: a backend maps and copies what the guest granted; the table survives a snapshot restored in a new process',
  async () => {
    const g = bootGuest('gnttab snap');
    const file = join(dir, 'gnttab.xks');
    try {
      await g.waitFor('gnttab: entries written', 20000);
      await g.machine.pause();
      const x = g.machine.context;
      const b = new GrantAccess(x.phys, x.shared.grants);
      // Ref 8 grants frame 0x1008 read-write to dom 0, ref 9 frame 0x1009 read-only (prog/gnttab.c).
      const rw = b.map(8, false);
      assert.is(rw.status, Gntst.okay);
      rw.mapping!.page.set([1, 2, 3]);
      assert.equal([...x.phys.bytes(x.phys.offsetOf(0x1008 * 4096), 3)], [1, 2, 3]);
      assert.is(b.map(9, false).status, Gntst.general_error, 'read-only grant, write map');
      const data = new Uint8Array(3);
      assert.is(b.copyFrom(8, 0, data), Gntst.okay);
      assert.equal([...data], [1, 2, 3]);
      assert.is(b.unmap(rw.mapping!), Gntst.okay);
      assert.is(b.map(4000, true).status, Gntst.bad_gntref, 'past the 4 frames');
      const entry8 = x.phys.offsetOf(0x4000 * 4096 + 8 * 8, 8);
      assert.is(x.phys.getU32(entry8) & 0xffff, Gtf.permit_access, 'flags as the guest left them');
      await saveSnapshot(g.machine, file);
    } finally {
      await g.machine.destroy();
    }
    const r = await new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'restore', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (status) => resolve({ status, out, err }));
    });
    assert.is(r.status, 0, r.err + r.out.slice(-2000));
    assertPassed(r.out, 'gnttab after restore');
    assert.match(r.out, /ok - after the wait: frames still mapped where they were/);
    assert.match(r.out, /ok - after the wait: entries still there/);
  },
);

test.run();
