// Encode/decode cost of a full 8-vCPU machine state, per codec strategy.
// Per vCPU: 18 GPRs, sregs with 8 segments, 4 KiB XSAVE, 40 MSRs, 1 KiB
// LAPIC, events, 60 CPUID entries and cpu/xen_vcpu.  A machine is encoded as
// the msgpack of the 8 envelopes; decode is msgpack decode + decodeState.
//
// Strategies:
//   array  structs as positional arrays (the codec's choice, src/vmstate/codec.ts)
//   map    structs as objects keyed by field name
//   raw    msgpack of the state objects as they are, no descriptor and no
//          validation: the floor, to show what validation costs
//
// Array wins on size and both directions, even against raw msgpack of the
// objects, because it writes no key strings; u64 values stay bigint, as
// writing small ones as msgpack integers gained nothing clear (results in
// docs/benchmarks.md, "State encoding").
// Run: npm run bench -- vmstate, or
//   node -e "import('./dist/tools/bench/vmstate.js').then((m) => m.benchVmstate())"

import { Decoder, Encoder } from '@msgpack/msgpack';
import {
  MSGPACK_OPTIONS,
  array,
  bytes,
  decodeState,
  defineState,
  encodeState,
  struct,
  u16,
  u32,
  u64,
  u8,
  varArray,
} from '../../src/vmstate/index.js';
import type { StateOf } from '../../src/vmstate/index.js';
import type { Layout } from '../../src/vmstate/compile.js';
import { NR_VIRQS, initialXenVcpuState, xenVcpuState } from '../../src/xen/vcpu/state.js';

const GPRS = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;
const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const VCPUS = 8;

const segment = struct({
  base: u64(),
  limit: u32(),
  selector: u16(),
  type: u8(),
  present: u8(),
  dpl: u8(),
  db: u8(),
  s: u8(),
  l: u8(),
  g: u8(),
  avl: u8(),
});
const dtable = struct({ base: u64(), limit: u16() });
const sregs = struct({
  ...(Object.fromEntries(SEGMENTS.map((s) => [s, segment])) as Record<(typeof SEGMENTS)[number], typeof segment>),
  gdt: dtable,
  idt: dtable,
  cr0: u64(),
  cr2: u64(),
  cr3: u64(),
  cr4: u64(),
  cr8: u64(),
  efer: u64(),
  apic_base: u64(),
  interrupt_bitmap: array(u64(), 4),
});
const events = struct({
  exception: struct({ injected: u8(), nr: u8(), has_error_code: u8(), pending: u8(), error_code: u32() }),
  interrupt: struct({ injected: u8(), nr: u8(), soft: u8(), shadow: u8() }),
  nmi: struct({ injected: u8(), pending: u8(), masked: u8() }),
  sipi_vector: u32(),
  flags: u32(),
});
const benchCpu = defineState({
  name: 'cpu',
  version: 1,
  fields: {
    regs: struct(
      Object.fromEntries(GPRS.map((r) => [r, u64()])) as Record<(typeof GPRS)[number], ReturnType<typeof u64>>,
    ),
    sregs,
    xsave: bytes(4096),
    xcr0: u64(),
    nmsrs: u32(),
    msrs: varArray(struct({ index: u32(), data: u64() }), { lengthField: 'nmsrs', max: 256 }),
    lapic: bytes(1024),
    events,
    mp_state: u32(),
    tsc_khz: u32(),
    ncpuid: u32(),
    cpuid: varArray(
      struct({ function: u32(), index: u32(), flags: u32(), eax: u32(), ebx: u32(), ecx: u32(), edx: u32() }),
      { lengthField: 'ncpuid', max: 256 },
    ),
  },
  subsections: { xen_vcpu: { state: xenVcpuState, optional: true } },
});
type BenchCpu = StateOf<typeof benchCpu>;

function syntheticCpu(id: number): BenchCpu {
  let seed = 0x9e3779b9 ^ id;
  const rnd32 = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const rnd64 = (): bigint => (BigInt(rnd32()) << 32n) | BigInt(rnd32());
  const seg = () => ({
    base: 0n,
    limit: 0xffffffff,
    selector: 0x10,
    type: 11,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 1,
    g: 1,
    avl: 0,
  });
  // XSAVE: legacy area and a few components live, the rest zero, as in a real guest.
  const xsave = new Uint8Array(4096);
  for (let i = 0; i < 1024; i++) xsave[i] = rnd32() & 0xff;
  const lapic = new Uint8Array(1024);
  for (let i = 0; i < 1024; i += 16) lapic[i] = rnd32() & 0xff;
  const xen = initialXenVcpuState();
  xen.xen_virq[0] = 5 + id;
  return {
    regs: Object.fromEntries(GPRS.map((r) => [r, rnd64()])) as BenchCpu['regs'],
    sregs: {
      ...(Object.fromEntries(SEGMENTS.map((s) => [s, seg()])) as Record<
        (typeof SEGMENTS)[number],
        ReturnType<typeof seg>
      >),
      gdt: { base: 0x1000n, limit: 0x7f },
      idt: { base: 0x2000n, limit: 0xfff },
      cr0: 0x80050033n,
      cr2: 0n,
      cr3: 0x100000n,
      cr4: 0x3606e0n,
      cr8: 0n,
      efer: 0xd01n,
      apic_base: 0xfee00900n,
      interrupt_bitmap: [0n, 0n, 0n, 0n],
    },
    xsave,
    xcr0: 7n,
    nmsrs: 40,
    msrs: Array.from({ length: 40 }, (_, i) => ({ index: 0xc0000080 + i, data: rnd64() })),
    lapic,
    events: {
      exception: { injected: 0, nr: 0, has_error_code: 0, pending: 0, error_code: 0 },
      interrupt: { injected: 0, nr: 0, soft: 0, shadow: 0 },
      nmi: { injected: 0, pending: 0, masked: 0 },
      sipi_vector: 0,
      flags: 0,
    },
    mp_state: 0,
    tsc_khz: 2_400_000,
    ncpuid: 60,
    cpuid: Array.from({ length: 60 }, (_, i) => ({
      function: i,
      index: 0,
      flags: 0,
      eax: rnd32(),
      ebx: rnd32(),
      ecx: rnd32(),
      edx: rnd32(),
    })),
    xen_vcpu: { ...xen, xen_vcpu_info_gpa: 0x1fe040n + BigInt(id) * 64n, xen_virq: xen.xen_virq.slice(0, NR_VIRQS) },
  };
}

interface Strategy {
  name: string;
  encode(cpus: BenchCpu[]): Uint8Array;
  decode(bytes: Uint8Array): unknown[];
}

const encoder = new Encoder(MSGPACK_OPTIONS);
const decoder = new Decoder(MSGPACK_OPTIONS);
const layoutStrategy = (layout: Layout): Strategy => ({
  name: layout,
  encode: (cpus) => encoder.encode(cpus.map((c) => encodeState(benchCpu, c, { layout }))),
  decode: (b) => (decoder.decode(b) as unknown[]).map((e) => decodeState(benchCpu, e, { layout })),
});
const STRATEGIES: Strategy[] = [
  layoutStrategy('array'),
  layoutStrategy('map'),
  { name: 'raw', encode: (cpus) => encoder.encode(cpus), decode: (b) => decoder.decode(b) as unknown[] },
];

/** Mean µs per call of `fn`, run for about `ms` after a warm-up. */
function time(fn: () => void, ms = 300): number {
  for (let i = 0; i < 20; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ms * 1e6) {
    fn();
    n++;
    elapsed = Number(process.hrtime.bigint() - start);
  }
  return elapsed / n / 1e3;
}

export async function benchVmstate(): Promise<void> {
  const cpus = Array.from({ length: VCPUS }, (_, i) => syntheticCpu(i));
  console.log(
    `vmstate: full state of a ${VCPUS}-vCPU machine (4 KiB xsave, 40 MSRs, 60 CPUID entries, xen_vcpu per vCPU)`,
  );
  console.log('strategy   bytes/machine   encode µs   encode MB/s   decode µs   decode MB/s');
  for (const s of STRATEGIES) {
    const bytes = s.encode(cpus);
    const back = s.decode(bytes);
    if (back.length !== VCPUS) throw new Error(`${s.name}: decoded ${back.length} vCPUs`);
    const enc = time(() => s.encode(cpus));
    const dec = time(() => s.decode(bytes));
    const mbs = (us: number): string => (bytes.length / us).toFixed(0).padStart(11); // bytes per µs = MB/s
    console.log(
      `${s.name.padEnd(8)} ${String(bytes.length).padStart(15)} ${enc.toFixed(1).padStart(11)} ${mbs(enc)}   ${dec.toFixed(1).padStart(9)} ${mbs(dec)}`,
    );
  }
  console.log(
    'kept: array (positional structs carry no key strings: ~30% fewer bytes, and decode is cheaper than map)',
  );
}
