// The `irqchip` section: the in-kernel PIC pair and IOAPIC (KVM_GET_IRQCHIP
// with chip ids 0, 1, 2), each kept as the raw bytes of its kernel struct
// (struct kvm_pic_state, struct kvm_ioapic_state; not the 512-byte union).
// Raw because nothing in xenkvm interprets them; the inspector can decode
// them with the layouts in structs.ts.
import { bytes, defineState } from '../../vmstate/index.js';
import type { StateOf } from '../../vmstate/index.js';
import { kvm_ioapic_state, kvm_pic_state } from '../structs.js';

export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

export const irqchipFields = {
  pic_master: bytes(kvm_pic_state.size),
  pic_slave: bytes(kvm_pic_state.size),
  ioapic: bytes(kvm_ioapic_state.size),
};

export const irqchipState = defineState({ name: 'irqchip', version: 1, fields: irqchipFields });
export type IrqchipState = StateOf<typeof irqchipState>;

/** Which state field holds which chip id. */
export const IRQCHIP_CHIPS = [
  ['pic_master', KVM_IRQCHIP.PIC_MASTER],
  ['pic_slave', KVM_IRQCHIP.PIC_SLAVE],
  ['ioapic', KVM_IRQCHIP.IOAPIC],
] as const;
