// Special registers (struct kvm_sregs): segments, descriptor tables, control
// registers, EFER and the APIC base.  Every byte the kernel reports is kept
// (segment flags as u8, not bool) so a restore writes back exactly what was
// read.  `interrupt_bitmap` holds the vector of an interrupt KVM had already
// injected (with an in-kernel irqchip at most one bit); it is restored as well
// as vcpu events' `interrupt`, as QEMU does, because KVM_SET_SREGS re-queues
// it and KVM_SET_VCPU_EVENTS only marks it injected.
import { array, struct, u16, u32, u64, u8 } from '../../vmstate/index.js';
import { kvm_sregs } from '../structs.js';
import { bindStruct } from './bind.js';

export const segmentFields = {
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
  unusable: u8(),
};
export const dtableFields = { base: u64(), limit: u16() };

const segment = () => struct(segmentFields);
const dtable = () => struct(dtableFields);

export const sregsFields = {
  cs: segment(),
  ds: segment(),
  es: segment(),
  fs: segment(),
  gs: segment(),
  ss: segment(),
  tr: segment(),
  ldt: segment(),
  gdt: dtable(),
  idt: dtable(),
  cr0: u64(),
  cr2: u64(),
  cr3: u64(),
  cr4: u64(),
  cr8: u64(),
  efer: u64(),
  apic_base: u64(),
  interrupt_bitmap: array(u64(), 4),
};

export const sregsBinding = bindStruct(sregsFields, kvm_sregs);
