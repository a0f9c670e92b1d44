// VCPUOP_initialise's struct vcpu_hvm_context (public/hvm/hvm_vcpu.h) turned
// into the register state a vCPU starts with, the same way the PVH entry
// state is built for vCPU 0.
import { GPR_COUNT, Gpr, type Segment, type SpecialRegs } from '../../kvm/types.js';
import { VCPU_HVM_MODE_32B } from '../abi.js';

/** Segment attributes as Xen packs them: type 0-3, S 4, DPL 5-6, P 7, AVL 8, L 9, D/B 10, G 11. */
function segment(selector: number, base: bigint, limit: number, ar: number, fallback: number): Segment {
  const a = ar === 0 ? fallback : ar;
  return {
    base,
    limit: limit >>> 0,
    selector,
    type: a & 0xf,
    s: ((a >> 4) & 1) === 1,
    dpl: (a >> 5) & 3,
    present: ((a >> 7) & 1) === 1,
    avl: ((a >> 8) & 1) === 1,
    l: ((a >> 9) & 1) === 1,
    db: ((a >> 10) & 1) === 1,
    g: ((a >> 11) & 1) === 1,
    unusable: false,
  };
}

const CODE32 = 0xc9b;
const DATA = 0xc93;
const CODE64 = 0xa9b;
const TSS = 0x8b;

/** cpu_regs is a union at offset 8: the 32-bit or the 64-bit layout, as the mode field says. */
const REGS = 8;

export function hvmContextToState(ctx: Uint8Array): { gpr: bigint[]; sregs: SpecialRegs } {
  const v = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
  const gpr = new Array<bigint>(GPR_COUNT).fill(0n);
  const sregs = v.getUint32(0, true) === VCPU_HVM_MODE_32B ? state32(v, gpr) : state64(v, gpr);
  return { gpr, sregs };
}

/** The GPRs in the order both layouts list them. */
function setGprs(gpr: bigint[], values: bigint[]): void {
  [
    gpr[Gpr.RAX],
    gpr[Gpr.RCX],
    gpr[Gpr.RDX],
    gpr[Gpr.RBX],
    gpr[Gpr.RSP],
    gpr[Gpr.RBP],
    gpr[Gpr.RSI],
    gpr[Gpr.RDI],
    gpr[Gpr.RIP],
    gpr[Gpr.RFLAGS],
  ] = values;
}

/** No LDT; a fresh object per vCPU state. */
function unusableLdt(): Segment {
  return {
    base: 0n,
    limit: 0xffff,
    selector: 0,
    type: 2,
    present: false,
    dpl: 0,
    db: false,
    s: false,
    l: false,
    g: false,
    avl: false,
    unusable: true,
  };
}

/** struct vcpu_hvm_x86_32: segments with bases, limits and attributes of their own. */
function state32(v: DataView, gpr: bigint[]): SpecialRegs {
  const r = REGS;
  const u32 = (o: number) => BigInt(v.getUint32(r + o, true));
  setGprs(gpr, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36].map(u32));
  const seg = (sel: number, baseOff: number, limitOff: number, arOff: number, fb: number) =>
    segment(sel, u32(baseOff), v.getUint32(r + limitOff, true), v.getUint16(r + arOff, true), fb);
  const data = seg(0x18, 68, 88, 106, DATA);
  return {
    cs: seg(0x10, 64, 84, 104, CODE32),
    ds: data,
    es: seg(0x18, 76, 96, 110, DATA),
    fs: { ...data },
    gs: { ...data },
    ss: seg(0x18, 72, 92, 108, DATA),
    tr: seg(0x40, 80, 100, 112, TSS),
    ldt: unusableLdt(),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: u32(40),
    cr2: 0n,
    cr3: u32(44),
    cr4: u32(48),
    cr8: 0n,
    efer: v.getBigUint64(r + 56, true),
    apicBase: 0n,
  };
}

/** struct vcpu_hvm_x86_64: flat 64-bit segments. */
function state64(v: DataView, gpr: bigint[]): SpecialRegs {
  const r = REGS;
  const u64 = (o: number) => v.getBigUint64(r + o, true);
  setGprs(gpr, [0, 8, 16, 24, 32, 40, 48, 56, 64, 72].map(u64));
  const flat = (sel: number, ar: number) => segment(sel, 0n, 0xffffffff, ar, ar);
  return {
    cs: flat(0x10, CODE64),
    ds: flat(0x18, DATA),
    es: flat(0x18, DATA),
    fs: flat(0x18, DATA),
    gs: flat(0x18, DATA),
    ss: flat(0x18, DATA),
    tr: { ...flat(0x40, TSS), limit: 0x67 },
    ldt: unusableLdt(),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: u64(80),
    cr2: 0n,
    cr3: u64(88),
    cr4: u64(96),
    cr8: 0n,
    efer: u64(104),
    apicBase: 0n,
  };
}
