// Synthetic snapshots for the inspector suites: real descriptors, realistic
// states (a 2-vCPU PVH guest in long mode with timers and ports bound), and
// the real stream writer.
import { ConsoleService } from '../../src/xen/console/service.js';
import { saveConsole, xenConsoleState, type XenConsoleState } from '../../src/xen/console/state.js';
import { PAGE_SIZE, writeRam, writeSnapshotFile } from '../../src/migrate/index.js';
import type { Section } from '../../src/migrate/index.js';
import { encodeState, schemaOf, type AnyDescriptor, type StateRecord } from '../../src/vmstate/index.js';
import { zeroOf } from '../../src/vmstate/values.js';
import { machineCpuState } from '../../src/machine/sections.js';
import { irqchipState, kvmclockState } from '../../src/kvm/state/index.js';
import { initialXenVcpuState } from '../../src/xen/vcpu/state.js';
import { xenEvtchnState, xenHvmState, xenPagesState, xenOverlayState, xenTimeState } from '../../src/xen/state.js';
import { gnttabState, UNMAPPED_GPFN } from '../../src/xen/gnttab/state.js';
import { XenstoreServer } from '../../src/xen/xenstore/server.js';
import { writeDomainTree } from '../../src/xen/xenstore/domain-tree.js';
import { save as saveXenstore, xenstoreState } from '../../src/xen/xenstore/state.js';
import { xenMemoryState } from '../../src/xen/memory/state.js';

export const SHINFO_GPA = 0x1fe000;
export const GUEST_NS = 5_000_000_000n;

const zeroState = (d: AnyDescriptor): StateRecord => zeroOf({ kind: 'struct', fields: d.fields }) as StateRecord;

const seg = (selector: number, type: number, l: number) => ({
  base: 0n,
  limit: 0xffffffff,
  selector,
  type,
  present: 1,
  dpl: 0,
  db: l ? 0 : 1,
  s: 1,
  l,
  g: 1,
  avl: 0,
  unusable: 0,
});

export function cpuState(vcpu: number): StateRecord {
  const s = zeroState(machineCpuState as AnyDescriptor);
  s['tsc_khz'] = 2_400_000;
  s['cpuid_count'] = 2;
  s['cpuid'] = [
    { function: 0x40000000, index: 0, flags: 0, eax: 0x40000002, ebx: 0x566e6558, ecx: 0x65584d4d, edx: 0x4d4d566e },
    { function: 1, index: 0, flags: 0, eax: 0x806f8, ebx: vcpu << 24, ecx: 0x80000000, edx: 0x178bfbff },
  ];
  s['mp_state'] = 0;
  s['regs'] = {
    rax: 0n,
    rbx: 0x1000n + BigInt(vcpu),
    rcx: 0x26n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0x1ff000n - BigInt(vcpu) * 0x1000n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0x202n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0xffffffff81000123n + BigInt(vcpu),
    rflags: 0x246n,
  };
  const sregs = s['sregs'] as StateRecord;
  Object.assign(sregs, {
    cs: seg(0x8, 0xb, 1),
    ds: seg(0x10, 3, 0),
    es: seg(0x10, 3, 0),
    fs: seg(0, 3, 0),
    gs: seg(0, 3, 0),
    ss: seg(0x10, 3, 0),
    tr: { ...seg(0x18, 0xb, 0), s: 0, limit: 0x67 },
    ldt: { ...seg(0, 2, 0), present: 0, unusable: 1 },
    gdt: { base: 0x100000n, limit: 0x37 },
    idt: { base: 0x101000n, limit: 0xfff },
    cr0: 0x80050033n,
    cr2: 0n,
    cr3: 0x102000n,
    cr4: 0x6a0n,
    cr8: 0n,
    efer: 0xd01n,
    apic_base: 0xfee00900n,
  });
  s['xsave_size'] = 4096;
  s['nr_xcrs'] = 1;
  s['xcrs'] = [{ xcr: 0, value: 7n }];
  s['msr_count'] = 3;
  s['msrs'] = [
    { index: 0x10, data: 123_456_789n + BigInt(vcpu) },
    { index: 0xc0000080, data: 0xd01n },
    { index: 0xc0000082, data: 0xffffffff81000800n },
  ];
  const x = initialXenVcpuState() as unknown as StateRecord;
  x['xen_vcpu_info_gpa'] = BigInt(SHINFO_GPA + vcpu * 64);
  x['xen_vcpu_time_info_gpa'] = BigInt(0x1fd000 + vcpu * 32);
  x['xen_vcpu_callback_vector'] = 0xf3;
  (x['xen_virq'] as number[])[0] = 3 + vcpu; // VIRQ_TIMER → port 3 (vCPU 0), 4 (vCPU 1)
  x['xen_singleshot_timer_ns'] = GUEST_NS + 3_000_000n;
  s['xen_vcpu'] = x;
  return s;
}

/** Sections in a default fixture: two cpu sections and xenSections(). */
export function fixtureSections(): number {
  return 2 + xenSections().length;
}

/** Grant frame 0 (emulator page 8): the console grant, and ref 9 read-only and mapped for reading. */
function grantFrame(): Uint8Array {
  const page = new Uint8Array(4096);
  const v = new DataView(page.buffer);
  v.setUint16(0, 1, true); // GTF_permit_access, domid 0
  v.setUint32(4, 0xfefff, true);
  v.setUint16(9 * 8, 1 | 4 | 8, true); // permit_access|readonly|reading
  v.setUint32(9 * 8 + 4, 0x123, true);
  return page;
}

/** A console backend that logged a prompt and holds typed input the guest has not read. */
export function consoleFixture(): XenConsoleState {
  const s = new ConsoleService();
  s.record(new TextEncoder().encode('booting\r\ngrub> '));
  s.queueInput(new TextEncoder().encode('echo hi\r'));
  s.outTotal = 6;
  return saveConsole(s);
}

export function xenSections(): { desc: AnyDescriptor; state: StateRecord }[] {
  const params = new Array<bigint>(64).fill(0n);
  params[0] = (2n << 56n) | 0xf3n;
  return [
    {
      desc: xenOverlayState as AnyDescriptor,
      state: { shinfo_gpa: BigInt(SHINFO_GPA), long_mode: true, hypercall_page_gpa: 0x1fc000n },
    },
    {
      desc: xenEvtchnState as AnyDescriptor,
      state: {
        callback_param: params[0],
        nr_ports: 6,
        port_table: [
          { vcpu: 0, type: 0, value: 0 },
          { vcpu: 0, type: 1, value: 0 },
          { vcpu: 0, type: 5, value: 0 },
          { vcpu: 0, type: 4, value: 0 },
          { vcpu: 1, type: 4, value: 0 },
          { vcpu: 0, type: 2, value: 1 },
        ],
      },
    },
    { desc: xenHvmState as AnyDescriptor, state: { params } },
    { desc: xenstoreState as AnyDescriptor, state: fixtureXenstore() as unknown as StateRecord },
    {
      desc: xenPagesState as AnyDescriptor,
      state: {
        nr_pages: 2,
        pages: [
          { index: 7, data: new Uint8Array(4096).fill(0x41, 0, 12) },
          { index: 8, data: grantFrame() },
        ],
      },
    },
    {
      // Frame 0 where GRUB maps it: the first frame past RAM.
      desc: gnttabState as AnyDescriptor,
      state: { version: 1, nr_frames: 2, frame_gpfn: [0x400n, UNMAPPED_GPFN] },
    },
    {
      desc: xenMemoryState as AnyDescriptor,
      state: {
        ballooned_pages: 24n,
        unmapped_pages: 0n,
        nr_holes: 2,
        holes: [
          { first_pfn: 0x300n, count: 16n },
          { first_pfn: 0x320n, count: 8n },
        ],
        guest_e820: false,
        nr_e820: 0,
        e820: [],
      },
    },
    { desc: irqchipState as AnyDescriptor, state: zeroState(irqchipState as AnyDescriptor) },
    { desc: kvmclockState as AnyDescriptor, state: { clock: 5_000_123_456n, flags: 2, realtime: 0n, host_tsc: 0n } },
    {
      desc: xenTimeState as AnyDescriptor,
      state: { guest_ns: GUEST_NS, tsc_khz: 2_400_000, wc_sec: 1_700_000_000n, wc_nsec: 0 },
    },
    { desc: xenConsoleState as AnyDescriptor, state: consoleFixture() as unknown as StateRecord },
  ];
}

/** The daemon of a guest (domain 1, "fixture") that wrote data/greeting and watches it. */
export function fixtureXenstore(greeting = 'hello') {
  const server = new XenstoreServer();
  writeDomainTree(server, { domid: 1, name: 'fixture', memoryKb: 4096, vcpus: 2 });
  server.introduceDomain(1);
  const send = (type: number, ...parts: string[]) =>
    server.handle(1, { type, reqId: 1, txId: 0, payload: new TextEncoder().encode(parts.join('\0')) });
  send(11, 'data/greeting', greeting);
  send(4, 'data/greeting', 'tok\0');
  server.take(1);
  return saveXenstore(server);
}

/** A 4 MiB guest image: page 0x10..0x1f random, the shared_info page with port 3 pending and port 4 masked. */
export function guestRam(pages = 1024, seed = 7): Uint8Array {
  const ram = new Uint8Array(pages * PAGE_SIZE);
  let x = seed;
  for (let p = 0x10; p < 0x20; p++)
    for (let i = 0; i < PAGE_SIZE; i++) ram[p * PAGE_SIZE + i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  ram[SHINFO_GPA + 2048] = 1 << 3; // pending: port 3
  ram[SHINFO_GPA + 2560] = 1 << 4; // mask: port 4
  return ram;
}

export interface FixtureOptions {
  vcpus?: number;
  ram?: Uint8Array;
  compress?: boolean;
  /** Change states before they are written. */
  edit?: (cpus: StateRecord[], xen: { desc: AnyDescriptor; state: StateRecord }[]) => void;
  /** Write `cpu` with another descriptor (e.g. an older cpu/xen_vcpu); `edit` adapts each state to it. */
  cpu?: { desc: AnyDescriptor; edit: (s: StateRecord) => void };
  /** Sections written as they are, with their schema (e.g. one this build does not know). */
  extra?: { section: Section; schema: unknown }[];
}

export async function writeFixture(path: string, opts: FixtureOptions = {}): Promise<void> {
  const vcpus = opts.vcpus ?? 2;
  const ram = opts.ram ?? guestRam();
  const cpus = Array.from({ length: vcpus }, (_, i) => cpuState(i));
  const xen = xenSections();
  opts.edit?.(cpus, xen);
  const cpuDesc = opts.cpu?.desc ?? (machineCpuState as AnyDescriptor);
  if (opts.cpu) for (const c of cpus) opts.cpu.edit(c);
  const schemas: Record<string, unknown> = { cpu: schemaOf(cpuDesc) };
  for (const s of xen) schemas[s.desc.name] = schemaOf(s.desc);
  for (const e of opts.extra ?? []) schemas[e.section.name] = e.schema;
  await writeSnapshotFile(
    path,
    { producer: 'xenkvm 0.1.0', machine: { memBytes: ram.length, vcpus }, schemas },
    async (w) => {
      for (let i = 0; i < vcpus; i++)
        await w.writeSection({ name: 'cpu', instance: i, version: 1, payload: encodeState(cpuDesc, cpus[i]) });
      for (const s of xen)
        await w.writeSection({
          name: s.desc.name,
          instance: 0,
          version: s.desc.version,
          payload: encodeState(s.desc, s.state),
        });
      for (const e of opts.extra ?? []) await w.writeSection(e.section);
      await writeRam(w, ram, { compress: opts.compress ?? false });
    },
    { sync: false, alignPages: !(opts.compress ?? false) },
  );
}
