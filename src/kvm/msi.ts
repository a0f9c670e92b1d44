// MSI injection (KVM_SIGNAL_MSI on the VM fd), usable from any thread: each
// thread builds its own sender so the argument buffer is never shared.  With
// the in-kernel LAPIC the interrupt reaches a running or halted vCPU without
// userspace help.
import { ioctlBuf } from './libc.js';
import { offsetOf } from './layout.js';
import { KVM } from './ioctls.js';
import * as S from './structs.js';

const ADDR_LO = offsetOf(S.kvm_msi, 'address_lo');
const DATA = offsetOf(S.kvm_msi, 'data');
/** xAPIC MSI address: 0xFEE, destination APIC ID in bits 19:12, physical mode. */
const MSI_BASE = 0xfee00000;

export class MsiSender {
  private readonly buf = new Uint8Array(S.kvm_msi.size);
  private readonly view = new DataView(this.buf.buffer);
  constructor(private readonly vmFd: number) {}

  /** Fixed, edge-triggered `vector` to the LAPIC whose ID is `apicId`. */
  send(apicId: number, vector: number): void {
    this.view.setUint32(ADDR_LO, (MSI_BASE | ((apicId & 0xff) << 12)) >>> 0, true);
    this.view.setUint32(DATA, vector & 0xff, true);
    ioctlBuf(this.vmFd, KVM.SIGNAL_MSI, this.buf, 'KVM_SIGNAL_MSI');
  }
}
