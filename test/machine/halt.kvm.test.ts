// Halt detection: the in-kernel irqchip keeps HLT inside KVM, so a guest
// that halts for good with interrupts off would otherwise hang the run.
// The machine's probe ends it as "halted" (xenkvm exit 7) within a few
// seconds; a guest idling in `sti; hlt` keeps running, and pausing and
// resuming it is not disturbed by the probe.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bootGuest } from '../helpers/guest.js';
import { xenkvmSync } from '../helpers/cli.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { GUEST_ELF } from '../helpers/paths.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip halt: ${skip}`);
const kvmTest = skip ? test.skip : test;

kvmTest('cli; hlt on every vCPU ends the run as halted within a few seconds', async () => {
  for (const vcpus of [1, 2]) {
    const g = bootGuest('halt', { vcpus });
    try {
      await g.waitFor('halt: ', 10000);
      const t0 = performance.now();
      const o = await Promise.race([
        g.outcome,
        new Promise<never>((_, no) => setTimeout(() => no(new Error('still running after 8 s')), 8000).unref()),
      ]);
      assert.equal(o, { kind: 'halted' }, `${vcpus} vCPU(s)`);
      assert.ok(performance.now() - t0 < 6000, `took ${Math.round(performance.now() - t0)} ms`);
    } finally {
      await g.machine.destroy();
    }
  }
});

kvmTest('sti; hlt with a timer keeps running, through a pause and resume', async () => {
  const g = bootGuest('halt on', { vcpus: 2 });
  let ended = false;
  void g.outcome.then(() => (ended = true));
  try {
    await g.waitFor('halt: 2 vCPU(s) in sti; hlt', 10000);
    await new Promise((r) => setTimeout(r, 1500));
    await g.machine.pause();
    await new Promise((r) => setTimeout(r, 300));
    g.machine.resume();
    await new Promise((r) => setTimeout(r, 2500));
    assert.not.ok(ended, 'the idle guest was ended');
    assert.is(g.machine.status, 'running');
  } finally {
    await g.machine.destroy();
  }
});

kvmTest('xenkvm run of a guest that halts for good: exit 7 and one line saying so', () => {
  const r = xenkvmSync(['run', GUEST_ELF, '--cmdline', 'halt']);
  assert.is(r.status, 7, r.stderr);
  assert.match(r.stderr, /halted with nothing left to wake it/);
});

test.run();
