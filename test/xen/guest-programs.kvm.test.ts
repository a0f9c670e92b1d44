// The test guest checks the Xen ABI from the inside: each program asserts
// its own results and ends with RESULT: PASS or RESULT: FAIL n.  These tests
// boot it on real KVM and require a pass and a clean poweroff.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runGuest } from '../helpers/guest.js';
import { kvmSkipReason } from '../helpers/kvm.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip guest-programs: ${skip}`);
const kvmTest = skip ? test.skip : test;

async function expectPass(cmdline: string, vcpus: number, ms = 30000, mem?: number): Promise<string> {
  const { console: out, outcome } = await runGuest(cmdline, { vcpus, ms, ...(mem ? { mem } : {}) });
  assert.ok(out.includes('RESULT: PASS'), `'${cmdline}' on ${vcpus} vCPU(s) did not pass:\n${out.slice(-3000)}`);
  assert.equal(outcome, { kind: 'shutdown', reason: 'poweroff' });
  assert.not.match(out, /not ok -/);
  return out;
}

kvmTest('selftest: every boot hypercall, -ENOSYS, -EFAULT, ring-3 refusal', async () => {
  const out = await expectPass('selftest', 1);
  assert.match(out, /ok - hypercall made directly from ring 3 returns -EPERM/);
});

kvmTest('evtchn on 4 vCPUs: every EVTCHNOP and error code', async () => {
  const out = await expectPass('evtchn', 4);
  assert.match(out, /# \d+ checks, 0 failed/);
});

kvmTest('timer on 2 vCPUs: 1 kHz single-shot ticks, none lost, early or backwards', async () => {
  const out = await expectPass('timer 500ms', 2);
  assert.match(out, /vcpu 1: \d+ ticks/);
});

kvmTest('ipi ping-pong between vCPUs', async () => {
  await expectPass('ipi 200', 2);
});

kvmTest('soak on 2 vCPUs for 3 s: no violation', async () => {
  const out = await expectPass('soak 3s', 2);
  assert.match(out, /soak: done .*violations=0/);
  assert.not.match(out, /VIOLATION/);
});

kvmTest('fuzz for 2 s: the emulator and the guest survive hostile hypercalls', async () => {
  const out = await expectPass('fuzz 2s', 2);
  assert.match(out, /fuzz: \d+ hypercalls made/);
  assert.match(
    out,
    /fuzz: [1-9]\d* scribbles on the console and xenstore rings/,
    'the rings were there to scribble on',
  );
});

kvmTest('memmap: memory_map, the start info map and RAM agree; boot information above the image', async () => {
  const out = await expectPass('memmap', 1);
  assert.match(out, /# \d+ checks, 0 failed/);
});

kvmTest('memmap on a machine with RAM above 4 GiB', async () => {
  const out = await expectPass('memmap', 1, 30000, 2 ** 32 + (64 << 20));
  assert.match(out, /# e820 3: 0xfeff8000-0xfeffffff type 2/);
  assert.match(out, /# e820 4: 0x100000000-0x113ffffff type 1/);
});

kvmTest('balloon on 2 vCPUs: pages given back and populated again, zero, order 9, continuations, errors', async () => {
  const out = await expectPass('balloon', 2);
  assert.match(out, /# \d+ checks, 0 failed/);
});

test.run();
