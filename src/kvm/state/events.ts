// Pending and injected events (struct kvm_vcpu_events): exception, interrupt,
// NMI, SIPI vector, SMM and triple fault.  `flags` is kept as KVM_GET_VCPU_EVENTS
// reported it: it says which optional parts (shadow, SMM, payload, triple
// fault) are valid, and only parts the destination VM enabled may be set.
import { struct, u32, u64, u8 } from '../../vmstate/index.js';
import { kvm_vcpu_events } from '../structs.js';
import { bindStruct } from './bind.js';

export const KVM_VCPUEVENT_VALID = {
  NMI_PENDING: 0x1,
  SIPI_VECTOR: 0x2,
  SHADOW: 0x4,
  SMM: 0x8,
  PAYLOAD: 0x10,
  TRIPLE_FAULT: 0x20,
} as const;

export const eventsFields = {
  exception: struct({ injected: u8(), nr: u8(), has_error_code: u8(), pending: u8(), error_code: u32() }),
  interrupt: struct({ injected: u8(), nr: u8(), soft: u8(), shadow: u8() }),
  nmi: struct({ injected: u8(), pending: u8(), masked: u8() }),
  sipi_vector: u32(),
  flags: u32(),
  smi: struct({ smm: u8(), pending: u8(), smm_inside_nmi: u8(), latched_init: u8() }),
  triple_fault: struct({ pending: u8() }),
  exception_has_payload: u8(),
  exception_payload: u64(),
};

export const eventsBinding = bindStruct(eventsFields, kvm_vcpu_events);
