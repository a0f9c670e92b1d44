// General registers (struct kvm_regs), saved with KVM_GET_REGS.
import { u64 } from '../../vmstate/index.js';
import { kvm_regs } from '../structs.js';
import { bindStruct } from './bind.js';

/** Member names and order of struct kvm_regs. */
export const regsFields = {
  rax: u64(),
  rbx: u64(),
  rcx: u64(),
  rdx: u64(),
  rsi: u64(),
  rdi: u64(),
  rsp: u64(),
  rbp: u64(),
  r8: u64(),
  r9: u64(),
  r10: u64(),
  r11: u64(),
  r12: u64(),
  r13: u64(),
  r14: u64(),
  r15: u64(),
  rip: u64(),
  rflags: u64(),
};

export const regsBinding = bindStruct(regsFields, kvm_regs);
