// The `cpu`, `kvmclock`, `irqchip` and `pit` descriptors and their bindings
// to the kernel structs, without KVM: bytes → state → bytes keeps every
// member the descriptor names at its C offset, the state round-trips through
// the codec, the Xen layer can add its subsection, and putCpuState refuses
// a state that does not fit before it issues any ioctl.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decode, encode } from '@msgpack/msgpack';
import { leaves, type Layout } from '../../src/kvm/layout.js';
import * as S from '../../src/kvm/structs.js';
import { VmstateError } from '../../src/errors.js';
import { CpuStateContext, putCpuState } from '../../src/kvm/cpu-state-io.js';
import { putVmState } from '../../src/kvm/vm-state-io.js';
import {
  cpuState,
  defineCpuState,
  irqchipState,
  kvmclockState,
  pitState,
  type CpuState,
} from '../../src/kvm/state/index.js';
import type { Binding } from '../../src/kvm/state/bind.js';
import { regsBinding, regsFields } from '../../src/kvm/state/regs.js';
import { sregsBinding, sregsFields } from '../../src/kvm/state/sregs.js';
import { eventsBinding, eventsFields } from '../../src/kvm/state/events.js';
import { debugregsBinding, debugregsFields } from '../../src/kvm/state/debugregs.js';
import { kvmclockBinding, kvmclockFields } from '../../src/kvm/state/kvmclock.js';
import { pitBinding, pitFields } from '../../src/kvm/state/pit.js';
import { cpuidEntryFields, readCpuid, writeCpuid, CPUID_BUF_SIZE } from '../../src/kvm/state/cpuid.js';
import {
  MSR_BUF_SIZE,
  MSR_IA32_TSC,
  MSR_IA32_TSC_DEADLINE,
  fillMsrEntries,
  readMsrEntries,
} from '../../src/kvm/state/msrs.js';
import { readXcrs, readXsave, writeXcrs, writeXsave } from '../../src/kvm/state/xsave.js';
import { bindStruct } from '../../src/kvm/state/bind.js';
import { MSGPACK_OPTIONS, decodeState, encodeState, u32 } from '../../src/vmstate/index.js';
import type { AnyDescriptor, FieldMap, StateOf } from '../../src/vmstate/index.js';
import { initialXenVcpuState, xenVcpuState } from '../../src/xen/vcpu/state.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T extends true>(_: T): void => {};
expectType<Equal<CpuState['msrs'], { index: number; data: bigint }[]>>(true);
expectType<Equal<CpuState['lapic'], Uint8Array>>(true);
expectType<Equal<CpuState['sregs']['cs']['selector'], number>>(true);

/** Deterministic pseudo-random bytes (xorshift), so a failure reproduces. */
function randomBytes(n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Is the C member at `path` (our dotted path from leaves()) named by the descriptor? */
function covered(fields: FieldMap, path: string[]): boolean {
  const f = fields[path[0]!];
  if (!f) return false;
  if (path.length === 1) return true;
  return f.kind === 'struct' && covered(f.fields, path.slice(1));
}

const BINDINGS: Array<[string, Binding<unknown>, Layout, FieldMap, number]> = [
  // [name, binding, layout, descriptor fields, bytes deliberately not kept (padding/reserved)]
  ['kvm_regs', regsBinding as Binding<unknown>, S.kvm_regs, regsFields, 0],
  ['kvm_sregs', sregsBinding as Binding<unknown>, S.kvm_sregs, sregsFields, 8 * 1 + 2 * 6],
  ['kvm_vcpu_events', eventsBinding as Binding<unknown>, S.kvm_vcpu_events, eventsFields, 1 + 26],
  ['kvm_debugregs', debugregsBinding as Binding<unknown>, S.kvm_debugregs, debugregsFields, 72],
  ['kvm_clock_data', kvmclockBinding as Binding<unknown>, S.kvm_clock_data, kvmclockFields, 4 + 16],
  ['kvm_pit_state2', pitBinding as Binding<unknown>, S.kvm_pit_state2, pitFields, 36],
];

for (const [name, binding, layout, fields, dropped] of BINDINGS) {
  test(`${name}: every member the descriptor names survives bytes → state → bytes at its C offset`, () => {
    const src = randomBytes(layout.size, layout.size);
    const state = binding.read(new DataView(src.buffer), 0);
    const out = new Uint8Array(layout.size);
    binding.write(new DataView(out.buffer), 0, state);
    let kept = 0;
    let zero = 0;
    for (const [ours, , off, size] of leaves(layout)) {
      const a = Array.from(src.subarray(off, off + size));
      const b = Array.from(out.subarray(off, off + size));
      if (covered(fields, ours.split('.'))) {
        assert.equal(b, a, `${name}.${ours}`);
        kept += size;
      } else {
        assert.ok(
          b.every((x) => x === 0),
          `${name}.${ours} is not state: written as zero`,
        );
        zero += size;
      }
    }
    assert.is(zero, dropped, `bytes of ${name} not kept in state (padding, reserved)`);
    assert.ok(kept > 0);
    // And a second pass changes nothing.
    assert.equal(binding.read(new DataView(out.buffer), 0), state);
  });
}

test('a binding that does not match its C struct is refused when the module loads', () => {
  assert.throws(
    () => bindStruct({ rax: u32() }, S.kvm_regs),
    /kvm_regs.rax: descriptor kind u32 does not match C type u64/,
  );
  assert.throws(() => bindStruct({ nope: u32() }, S.kvm_regs), /has no member nope/);
});

test('CPUID, MSR and XCR lists round-trip through their flexible kernel structs', () => {
  const entries = [0, 1, 0xd, 0x40000000].map((fn, i) => ({
    function: fn,
    index: i,
    flags: i & 1,
    eax: 0x11111111 * (i + 1),
    ebx: 2,
    ecx: 3,
    edx: 0xffffffff,
  }));
  const cv = new DataView(new ArrayBuffer(CPUID_BUF_SIZE));
  writeCpuid(cv, entries);
  assert.equal(readCpuid(cv), { cpuid_count: 4, cpuid: entries });
  assert.equal(Object.keys(entries[0]!), Object.keys(cpuidEntryFields));

  const xv = new DataView(new ArrayBuffer(S.kvm_xcrs.size));
  const xcrs = { nr_xcrs: 1, xcrs: [{ xcr: 0, value: 0x207n }] };
  assert.is(writeXcrs(xv, xcrs), null);
  assert.equal(readXcrs(xv), xcrs);
  assert.match(writeXcrs(xv, { nr_xcrs: 2, xcrs: [] }) ?? '', /nr_xcrs 2 with 0 entries/);
});

test('MSRs are written IA32_TSC first and IA32_TSC_DEADLINE last, the rest in saved order', () => {
  const v = new DataView(new ArrayBuffer(MSR_BUF_SIZE));
  const saved = [
    { index: MSR_IA32_TSC_DEADLINE, data: 5n },
    { index: 0x174, data: 1n },
    { index: MSR_IA32_TSC, data: 9n },
    { index: 0xc0000080, data: 2n },
  ];
  fillMsrEntries(v, saved);
  assert.is(v.getUint32(0, true), 4);
  assert.equal(
    readMsrEntries(v, 4).map((e) => e.index),
    [MSR_IA32_TSC, 0x174, 0xc0000080, MSR_IA32_TSC_DEADLINE],
  );
  assert.equal(readMsrEntries(v, 4)[3], { index: MSR_IA32_TSC_DEADLINE, data: 5n });
});

test('an AMX-sized XSAVE area keeps every byte; a 4096-byte host takes it only if the tail is zero', () => {
  const size = 11008;
  const big = randomBytes(size, 7);
  const st = readXsave(big, size);
  assert.is(st.xsave_ext_lines, Math.ceil((size - 4096) / 64));
  const back = new Uint8Array(size);
  assert.is(writeXsave(back, st), null);
  assert.equal(back, big);
  assert.match(
    writeXsave(new Uint8Array(4096), st) ?? '',
    /saved with 11008 bytes .* beyond the 4096 bytes this host's KVM takes/,
  );
  const zeroTail = readXsave(new Uint8Array(size).fill(3, 0, 4096), size);
  assert.is(writeXsave(new Uint8Array(4096), zeroTail), null, 'an all-init tail fits anywhere');
  const small = readXsave(randomBytes(4096, 3), 4096);
  assert.equal([small.xsave_ext_lines, small.xsave_ext], [0, []]);
});

/** A complete, plausible CpuState built from the bindings over random bytes. */
function sampleCpu(seed: number): CpuState {
  const r = (l: Layout) => new DataView(randomBytes(l.size, seed + l.size).buffer);
  const xs = readXsave(randomBytes(4096, seed), 4096);
  return {
    tsc_khz: 2_100_000,
    cpuid_count: 2,
    cpuid: [
      { function: 0, index: 0, flags: 0, eax: 0xd, ebx: 1, ecx: 2, edx: 3 },
      { function: 0x40000000, index: 0, flags: 0, eax: 0x40000005, ebx: 0, ecx: 0, edx: 0 },
    ],
    mp_state: 3,
    regs: regsBinding.read(r(S.kvm_regs), 0),
    sregs: sregsBinding.read(r(S.kvm_sregs), 0),
    ...xs,
    nr_xcrs: 1,
    xcrs: [{ xcr: 0, value: 7n }],
    debugregs: debugregsBinding.read(r(S.kvm_debugregs), 0),
    lapic: randomBytes(1024, seed + 1),
    msr_count: 2,
    msrs: [
      { index: MSR_IA32_TSC, data: 123456789n },
      { index: 0xc0000080, data: 0xd01n },
    ],
    events: eventsBinding.read(r(S.kvm_vcpu_events), 0),
  };
}

function viaMsgpack<D extends AnyDescriptor>(d: D, s: StateOf<D>): StateOf<D> {
  return decodeState(d, decode(encode(encodeState(d, s), MSGPACK_OPTIONS), MSGPACK_OPTIONS));
}

test('cpu, kvmclock, irqchip and pit states survive encode → msgpack → decode', () => {
  const cpu = sampleCpu(11);
  assert.equal(viaMsgpack(cpuState, cpu), cpu);
  const clock = { clock: 123_456_789_012n, flags: 6, realtime: 1_700_000_000_000_000_000n, host_tsc: 0n };
  assert.equal(viaMsgpack(kvmclockState, clock), clock);
  const chips = { pic_master: randomBytes(16, 1), pic_slave: randomBytes(16, 2), ioapic: randomBytes(216, 3) };
  assert.equal(viaMsgpack(irqchipState, chips), chips);
  const pit = pitBinding.read(new DataView(randomBytes(S.kvm_pit_state2.size, 5).buffer), 0);
  assert.equal(viaMsgpack(pitState, pit), pit);
  for (const d of [cpuState, kvmclockState, irqchipState, pitState])
    assert.equal([d.version, d.minVersion], [1, 1], d.name);
});

test('the codec refuses a cpu state whose counts disagree or whose enum is unknown', () => {
  const cpu = sampleCpu(12);
  assert.throws(
    () => encodeState(cpuState, { ...cpu, msr_count: 3 }),
    (e: unknown) => e instanceof VmstateError && /msr/.test(e.message),
  );
  assert.throws(
    () => encodeState(cpuState, { ...cpu, mp_state: 7 as CpuState['mp_state'] }),
    (e: unknown) => e instanceof VmstateError && /mp_state/.test(e.message),
  );
});

test('the Xen layer adds cpu/xen_vcpu without editing the cpu descriptor', () => {
  const withXen = defineCpuState({ xen_vcpu: { state: xenVcpuState, optional: false } });
  type WithXen = StateOf<typeof withXen>;
  expectType<Equal<WithXen['xen_vcpu'], StateOf<typeof xenVcpuState> | undefined>>(true);
  const s: WithXen = { ...sampleCpu(13), xen_vcpu: { ...initialXenVcpuState(), xen_vcpu_callback_vector: 0xf3 } };
  const env = encodeState(withXen, s);
  assert.ok(env.s && 'cpu/xen_vcpu' in env.s);
  assert.equal(viaMsgpack(withXen, s), s);
  // A plain `cpu` reader refuses the mandatory subsection it does not know, by name.
  assert.throws(() => decodeState(cpuState, env), /unknown mandatory subsection cpu\/xen_vcpu/);
});

test('putCpuState refuses a state that does not fit, naming vCPU and field, before any ioctl', () => {
  const ctx = new CpuStateContext({ xsaveSize: 4096, msrIndices: [MSR_IA32_TSC] });
  const cpu = sampleCpu(14);
  // fd -1: had validation let these through, the first ioctl would fail with EBADF as a KvmError instead.
  const refused = (s: CpuState, path: string, re: RegExp) =>
    assert.throws(
      () => putCpuState(-1, s, ctx, 'cpu[2]'),
      (e: unknown) => e instanceof VmstateError && e.path === path && re.test(e.message),
    );
  refused({ ...cpu, lapic: new Uint8Array(1000) }, 'cpu[2].lapic', /1000 bytes, KVM's is 1024/);
  refused({ ...cpu, msr_count: 1 }, 'cpu[2].msrs', /2 MSRs but msr_count is 1/);
  refused({ ...cpu, cpuid_count: 9 }, 'cpu[2].cpuid', /2 CPUID entries but cpuid_count is 9/);
  refused({ ...cpu, xsave_size: 4160 }, 'cpu[2].xsave', /xsave_size 4160 does not match 0 extension lines/);
  refused({ ...cpu, nr_xcrs: 0 }, 'cpu[2].xcrs', /nr_xcrs 0 with 1 entries/);
  assert.throws(() => new CpuStateContext({ xsaveSize: 100, msrIndices: [] }), /XSAVE size must be 4096/);
});

test('putVmState checks every irqchip size before writing any chip', () => {
  const st = {
    kvmclock: { clock: 1n, flags: 0, realtime: 0n, host_tsc: 0n },
    irqchip: { pic_master: new Uint8Array(16), pic_slave: new Uint8Array(16), ioapic: new Uint8Array(512) },
  };
  assert.throws(
    () => putVmState(-1, st),
    (e: unknown) =>
      e instanceof VmstateError && e.path === 'irqchip.ioapic' && /512 bytes, KVM's struct has 216/.test(e.message),
  );
});

test.run();
