// struct kvm_sregs ⇄ SpecialRegs.  Used for the KVM_GET/SET_SREGS buffers and
// for the sync-regs copy inside kvm_run, so it reads at any base offset.
import { offsetOf } from './layout.js';
import { CONTROL_NAMES, SEGMENT_NAMES, kvm_dtable, kvm_segment, kvm_sregs } from './structs.js';
import type { DescriptorTable, Segment, SpecialRegs } from './types.js';

const SEG = {
  base: offsetOf(kvm_segment, 'base'),
  limit: offsetOf(kvm_segment, 'limit'),
  selector: offsetOf(kvm_segment, 'selector'),
  type: offsetOf(kvm_segment, 'type'),
  present: offsetOf(kvm_segment, 'present'),
  dpl: offsetOf(kvm_segment, 'dpl'),
  db: offsetOf(kvm_segment, 'db'),
  s: offsetOf(kvm_segment, 's'),
  l: offsetOf(kvm_segment, 'l'),
  g: offsetOf(kvm_segment, 'g'),
  avl: offsetOf(kvm_segment, 'avl'),
  unusable: offsetOf(kvm_segment, 'unusable'),
} as const;
const DT_BASE = offsetOf(kvm_dtable, 'base');
const DT_LIMIT = offsetOf(kvm_dtable, 'limit');
const CTRL_KEYS: Record<(typeof CONTROL_NAMES)[number], keyof SpecialRegs> = {
  cr0: 'cr0',
  cr2: 'cr2',
  cr3: 'cr3',
  cr4: 'cr4',
  cr8: 'cr8',
  efer: 'efer',
  apic_base: 'apicBase',
};

/** Offsets within struct kvm_sregs of the fields the hypercall path reads. */
export const SREGS_OFF = {
  csSelector: offsetOf(kvm_sregs, 'cs.selector'),
  csL: offsetOf(kvm_sregs, 'cs.l'),
  cr0: offsetOf(kvm_sregs, 'cr0'),
  cr3: offsetOf(kvm_sregs, 'cr3'),
  cr4: offsetOf(kvm_sregs, 'cr4'),
  efer: offsetOf(kvm_sregs, 'efer'),
} as const;

function readSeg(v: DataView, o: number): Segment {
  return {
    base: v.getBigUint64(o + SEG.base, true),
    limit: v.getUint32(o + SEG.limit, true),
    selector: v.getUint16(o + SEG.selector, true),
    type: v.getUint8(o + SEG.type),
    present: v.getUint8(o + SEG.present) !== 0,
    dpl: v.getUint8(o + SEG.dpl),
    db: v.getUint8(o + SEG.db) !== 0,
    s: v.getUint8(o + SEG.s) !== 0,
    l: v.getUint8(o + SEG.l) !== 0,
    g: v.getUint8(o + SEG.g) !== 0,
    avl: v.getUint8(o + SEG.avl) !== 0,
    unusable: v.getUint8(o + SEG.unusable) !== 0,
  };
}

function writeSeg(v: DataView, o: number, s: Segment): void {
  v.setBigUint64(o + SEG.base, s.base, true);
  v.setUint32(o + SEG.limit, s.limit >>> 0, true);
  v.setUint16(o + SEG.selector, s.selector, true);
  v.setUint8(o + SEG.type, s.type);
  v.setUint8(o + SEG.present, +s.present);
  v.setUint8(o + SEG.dpl, s.dpl);
  v.setUint8(o + SEG.db, +s.db);
  v.setUint8(o + SEG.s, +s.s);
  v.setUint8(o + SEG.l, +s.l);
  v.setUint8(o + SEG.g, +s.g);
  v.setUint8(o + SEG.avl, +s.avl);
  v.setUint8(o + SEG.unusable, +s.unusable);
}

const readDt = (v: DataView, o: number): DescriptorTable => ({
  base: v.getBigUint64(o + DT_BASE, true),
  limit: v.getUint16(o + DT_LIMIT, true),
});

export function readSregs(v: DataView, base: number): SpecialRegs {
  const out = {} as Record<string, unknown>;
  for (const n of SEGMENT_NAMES) out[n] = readSeg(v, base + offsetOf(kvm_sregs, n));
  out.gdt = readDt(v, base + offsetOf(kvm_sregs, 'gdt'));
  out.idt = readDt(v, base + offsetOf(kvm_sregs, 'idt'));
  for (const n of CONTROL_NAMES) out[CTRL_KEYS[n]] = v.getBigUint64(base + offsetOf(kvm_sregs, n), true);
  return out as unknown as SpecialRegs;
}

/** Writes `s` at `base`; the interrupt bitmap is cleared (in-kernel irqchip owns pending IRQs). */
export function writeSregs(v: DataView, base: number, s: SpecialRegs): void {
  for (const n of SEGMENT_NAMES) writeSeg(v, base + offsetOf(kvm_sregs, n), s[n]);
  for (const n of ['gdt', 'idt'] as const) {
    v.setBigUint64(base + offsetOf(kvm_sregs, n) + DT_BASE, s[n].base, true);
    v.setUint16(base + offsetOf(kvm_sregs, n) + DT_LIMIT, s[n].limit, true);
  }
  for (const n of CONTROL_NAMES) v.setBigUint64(base + offsetOf(kvm_sregs, n), s[CTRL_KEYS[n]] as bigint, true);
  const bm = base + offsetOf(kvm_sregs, 'interrupt_bitmap');
  for (let i = 0; i < 4; i++) v.setBigUint64(bm + i * 8, 0n, true);
}
