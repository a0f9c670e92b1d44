// On real KVM: boot the test guest on 2 vCPUs, pause it, read every vCPU's
// and the VM's state, write it into a fresh machine, read it back: the same
// state, except for the clocks, which run between the two reads (each
// exception is named and bounded below).  The state also survives
// encode → msgpack → decode through its descriptors unchanged.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { decode, encode } from '@msgpack/msgpack';
import { KvmError, VmstateError } from '../../src/errors.js';
import { KvmVm, Kvm, kvmUnavailable } from '../../src/kvm/kvm.js';
import { KVM } from '../../src/kvm/ioctls.js';
import { ioctlBuf } from '../../src/kvm/libc.js';
import * as S from '../../src/kvm/structs.js';
import { CpuStateContext, getCpuState, putCpuState, type CpuState } from '../../src/kvm/cpu-state-io.js';
import { getKvmclock, getVmState, putKvmclock, putVmState, type VmState } from '../../src/kvm/vm-state-io.js';
import { KVM_CLOCK_FLAGS } from '../../src/kvm/state/index.js';
import { MP_STATES, MSR_IA32_TSC, cpuState, irqchipState, kvmclockState, pitState } from '../../src/kvm/state/index.js';
import { MSGPACK_OPTIONS, decodeState, encodeState } from '../../src/vmstate/index.js';
import type { AnyDescriptor, StateOf } from '../../src/vmstate/index.js';
import { XenMachine } from '../../src/machine/machine.js';
import { GUEST_ELF, repoPath } from '../helpers/paths.js';

const MEM = 64 << 20;
const VCPUS = 2;

function whyNot(): string | null {
  const noKvm = kvmUnavailable();
  if (noKvm) return noKvm;
  const b = spawnSync(process.execPath, [repoPath('tools/build-guest.mjs'), '--if-stale'], {
    encoding: 'utf8',
  });
  if (b.status !== 0 || !existsSync(GUEST_ELF))
    return `test guest not built (${(b.stderr || b.stdout).trim().split('\n').pop() ?? 'build-guest failed'})`;
  return null;
}
const skip = whyNot();
if (skip) console.log(`  skip state-roundtrip: ${skip}`);
const kvmTest = skip ? test.skip : test;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = { log: () => {} };

interface Saved {
  cpus: CpuState[];
  vm: VmState;
  ctx: CpuStateContext;
  console: string;
}
let saved: Saved | null = null;
let restored: { cpus: CpuState[]; vm: VmState } | null = null;
let target: XenMachine | null = null;

/** Boots `soak` (timers, IPIs, event channels, memory checks on every vCPU), lets it run ~300 ms, pauses, saves. */
async function bootAndSave(): Promise<{ m: XenMachine; s: Saved }> {
  let text = '';
  const m = XenMachine.boot({
    elf: readFileSync(GUEST_ELF),
    elfName: 'guest.elf',
    cmdline: 'soak',
    memBytes: MEM,
    vcpus: VCPUS,
    console: (b) => {
      text += Buffer.from(b).toString('latin1');
    },
    ...quiet,
  });
  m.start();
  for (let t = 0; t < 3000 && !text.includes('soak: vcpu 1'); t += 20) await sleep(20);
  await sleep(300);
  await m.pause();
  const ctx = CpuStateContext.probe(m.vm, m.handles[0]!.fd);
  const cpus = m.handles.map((h) => getCpuState(h.fd, ctx));
  return { m, s: { cpus, vm: getVmState(m.vm.fd), ctx, console: text } };
}

kvmTest("a paused guest's state is read from every vCPU and the VM", async () => {
  const { m, s } = await bootAndSave();
  try {
    saved = s;
    assert.match(s.console, /soak: vcpu 1: timer port/, 'both vCPUs run the soak before the save');
    assert.not.match(s.console, /VIOLATION/);
    for (const c of s.cpus) {
      assert.ok(
        c.mp_state === MP_STATES.RUNNABLE || c.mp_state === MP_STATES.HALTED,
        `mp_state ${c.mp_state}: runnable or halted`,
      );
      assert.ok(c.regs.rip > 0n && (c.sregs.efer & 0x400n) !== 0n, 'in long mode');
    }
    assert.not.equal(s.cpus[0]!.regs, s.cpus[1]!.regs, 'two distinct vCPUs were read');
    assert.ok(s.ctx.msrIndices.includes(MSR_IA32_TSC), 'IA32_TSC is among the saved MSRs');
    assert.ok(s.cpus[0]!.tsc_khz > 0);
    assert.is(s.cpus[0]!.cpuid_count, s.cpus[0]!.cpuid.length);
    assert.ok(
      s.cpus[0]!.cpuid.some((e) => e.function === 0x40000000),
      'the Xen CPUID leaves are part of the state',
    );
    assert.is(s.vm.pit, undefined, 'XenMachine creates no PIT, so there is no pit section');

    // A fresh machine with the same shape: RAM copied, then the KVM state put.
    const t = XenMachine.create({ memBytes: MEM, vcpus: VCPUS, console: () => {}, ...quiet });
    target = t;
    t.ram.bytes.set(m.ram.bytes);
    const ctx2 = CpuStateContext.probe(t.vm, t.handles[0]!.fd);
    assert.equal(ctx2.msrIndices, s.ctx.msrIndices, 'same host, same saveable MSRs');
    t.handles.forEach((h, i) => putCpuState(h.fd, s.cpus[i]!, ctx2, `cpu[${i}]`));
    putVmState(t.vm.fd, s.vm);
    restored = { cpus: t.handles.map((h) => getCpuState(h.fd, ctx2)), vm: getVmState(t.vm.fd) };
  } finally {
    await m.destroy();
    await target?.destroy();
    target = null;
  }
});

/** Offsets in the LAPIC page (Intel SDM table 10-1). */
const APIC_TMICT = 0x380;
const APIC_TMCCT = 0x390;

/**
 * Splits out what runs between the save and the read-back (checked
 * separately); everything else must be equal.
 *  - MSR IA32_TSC: see the test.
 *  - LAPIC current count (TMCCT): not a register KVM stores, but the time
 *    left on the APIC timer, computed at each KVM_GET_LAPIC; KVM_SET_LAPIC
 *    restarts the timer from the saved count, which then counts down again.
 */
function withoutClocks(c: CpuState): { cpu: CpuState; tsc: bigint; tmcct: number; tmict: number } {
  const tsc = c.msrs.find((e) => e.index === MSR_IA32_TSC)!.data;
  const lapic = c.lapic.slice();
  const v = new DataView(lapic.buffer);
  const tmcct = v.getUint32(APIC_TMCCT, true);
  v.setUint32(APIC_TMCCT, 0, true);
  const cpu = { ...c, lapic, msrs: c.msrs.map((e) => (e.index === MSR_IA32_TSC ? { ...e, data: 0n } : e)) };
  return { cpu, tsc, tmcct, tmict: v.getUint32(APIC_TMICT, true) };
}

kvmTest('the restored vCPUs read back identical, but for the TSC and APIC timer count that ran since', () => {
  assert.ok(saved && restored, 'the save/restore test ran');
  saved.cpus.forEach((before, i) => {
    const a = withoutClocks(before);
    const b = withoutClocks(restored!.cpus[i]!);
    // Every field, LAPIC bytes and XSAVE area included.
    assert.equal(b.cpu, a.cpu, `cpu[${i}]`);
    // IA32_TSC: KVM sets the TSC offset so the guest reads the saved value at
    // the moment of the write; by the read-back it has advanced a little.
    const ranMs = Number(b.tsc - a.tsc) / before.tsc_khz;
    assert.ok(b.tsc >= a.tsc && ranMs < 2000, `cpu[${i}] TSC advanced ${ranMs} ms, not by the host's uptime`);
    // The APIC timer's count stays within its initial count (0 when stopped).
    assert.ok(b.tmcct <= b.tmict, `cpu[${i}] TMCCT ${b.tmcct} within TMICT ${b.tmict}`);
  });
});

kvmTest('the restored VM reads back identical, but for the clock that ran since', () => {
  assert.ok(saved && restored);
  const a = saved.vm;
  const b = restored.vm;
  assert.equal(b.irqchip, a.irqchip, 'PIC master, PIC slave and IOAPIC bytes');
  assert.is(b.pit, undefined);
  // kvmclock.clock: set to the saved value, then running (ns).  realtime and
  // host_tsc are the host's clocks at the read, not guest state.
  const ranMs = Number(b.kvmclock.clock - a.kvmclock.clock) / 1e6;
  assert.ok(b.kvmclock.clock >= a.kvmclock.clock && ranMs < 2000, `kvmclock advanced ${ranMs} ms since the put`);
  assert.is(b.kvmclock.flags, a.kvmclock.flags);
});

function viaMsgpack<D extends AnyDescriptor>(d: D, s: StateOf<D>): StateOf<D> {
  return decodeState(d, decode(encode(encodeState(d, s), MSGPACK_OPTIONS), MSGPACK_OPTIONS));
}

kvmTest('every section survives encode → msgpack → decode unchanged', () => {
  assert.ok(saved);
  for (const c of saved.cpus) assert.equal(viaMsgpack(cpuState, c), c);
  assert.equal(viaMsgpack(kvmclockState, saved.vm.kvmclock), saved.vm.kvmclock);
  assert.equal(viaMsgpack(irqchipState, saved.vm.irqchip), saved.vm.irqchip);
  const bytes = encode(
    saved.cpus.map((c) => encodeState(cpuState, c)),
    MSGPACK_OPTIONS,
  );
  assert.ok(bytes.length > 4096 && bytes.length < 8 * 1024 * VCPUS, `2 vCPUs encode to ${bytes.length} bytes`);
});

kvmTest('a VM with a PIT round-trips its pit section; a VM without one refuses it by name', () => {
  const kvm = Kvm.open();
  const vms: KvmVm[] = [];
  try {
    const withPit = () => {
      const vm = new KvmVm(kvm);
      vms.push(vm);
      ioctlBuf(vm.fd, KVM.CREATE_PIT2, new Uint8Array(S.kvm_pit_config.size), 'KVM_CREATE_PIT2');
      return vm;
    };
    const a = withPit();
    const s = getVmState(a.fd);
    assert.ok(s.pit, 'pit section present');
    assert.is(s.pit.channels.length, 3);
    assert.equal(viaMsgpack(pitState, s.pit), s.pit);
    // A programmed channel 0 (mode 2, count 0x1234) must come back.
    s.pit.channels[0] = { ...s.pit.channels[0]!, count: 0x1234, mode: 2, rw_mode: 3 };
    const b = withPit();
    putVmState(b.fd, s);
    const back = getVmState(b.fd).pit!;
    assert.is(back.channels[0]!.count, 0x1234);
    assert.is(back.channels[0]!.mode, 2);
    assert.equal(
      back.channels.map((c) => ({ ...c, count_load_time: 0n })),
      s.pit.channels.map((c) => ({ ...c, count_load_time: 0n })),
      'all but count_load_time, the host ktime KVM rebases to "now"',
    );

    const noPit = new KvmVm(kvm);
    vms.push(noPit);
    assert.throws(
      () => putVmState(noPit.fd, s),
      (e: unknown) => e instanceof KvmError && /has a PIT \(section pit\) but this VM has none/.test(e.message),
    );
  } finally {
    vms.forEach((v) => v.destroy());
    kvm.close();
  }
});

kvmTest('put refuses a state the destination cannot hold, naming the vCPU and field, before touching KVM', () => {
  assert.ok(saved);
  const ctx = new CpuStateContext({ xsaveSize: 4096, msrIndices: saved.ctx.msrIndices });
  const big: CpuState = {
    ...saved.cpus[0]!,
    xsave_size: 4096 + 128,
    xsave_ext_lines: 2,
    xsave_ext: [new Uint8Array(64), new Uint8Array(64).fill(1)],
  };
  // fd -1: had it reached an ioctl, the error would be a KvmError (EBADF), not this.
  assert.throws(
    () => putCpuState(-1, big, ctx, 'cpu[1]'),
    (e: unknown) =>
      e instanceof VmstateError &&
      e.path === 'cpu[1].xsave' &&
      /saved with 4224 bytes .* beyond the 4096 bytes this host's KVM takes/.test(e.message),
  );
});

// KVM reports the host's wall clock with the KVM clock only when it runs a
// master clock (stable host TSC); this PVM host does not, so say so.
const realtimeSkip =
  skip ??
  (() => {
    const kvm = Kvm.open();
    const vm = new KvmVm(kvm);
    try {
      return getKvmclock(vm.fd).flags & KVM_CLOCK_FLAGS.REALTIME
        ? null
        : 'KVM_GET_CLOCK reports no KVM_CLOCK_REALTIME here (no master clock)';
    } finally {
      vm.destroy();
      kvm.close();
    }
  })();
if (realtimeSkip && !skip) console.log(`  skip advanceClock: ${realtimeSkip}`);
(realtimeSkip ? test.skip : test)('advanceClock moves the KVM clock on by the wall-clock time since the save', () => {
  const kvm = Kvm.open();
  const vm = new KvmVm(kvm);
  try {
    const c = getKvmclock(vm.fd);
    putKvmclock(vm.fd, { ...c, realtime: c.realtime - 5_000_000_000n }, { advanceClock: true });
    assert.ok(getKvmclock(vm.fd).clock - c.clock >= 5_000_000_000n);
    putKvmclock(vm.fd, { ...c, realtime: c.realtime - 5_000_000_000n });
    assert.ok(getKvmclock(vm.fd).clock - c.clock < 1_000_000_000n, 'without the option the clock resumes where it was');
  } finally {
    vm.destroy();
    kvm.close();
  }
});

test.after(async () => {
  await target?.destroy();
});

test.run();
