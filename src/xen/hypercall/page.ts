// The hypercall page of the userspace transport: stub i is
// `mov eax, i; out HYPERCALL_PORT, al; ret`, padded with int3, so a hypercall
// is one PIO exit whose registers carry the call (docs/xen-abi.md).  The port
// is an 8-bit immediate so the stub clobbers nothing but eax, which the
// hypercall ABI returns in anyway.
import { HYPERCALL_STUB_SIZE, HYPERCALL_STUBS } from '../abi.js';

export const HYPERCALL_PORT = 0x9e;

/** Writes the stubs into `page`, a view of the guest page the guest asked for. */
export function fillHypercallPage(page: Uint8Array): void {
  page.fill(0xcc);
  for (let i = 0; i < HYPERCALL_STUBS; i++) {
    const o = i * HYPERCALL_STUB_SIZE;
    page[o] = 0xb8; // mov eax, imm32
    page[o + 1] = i & 0xff;
    page[o + 2] = (i >> 8) & 0xff;
    page[o + 3] = 0;
    page[o + 4] = 0;
    page[o + 5] = 0xe6; // out imm8, al
    page[o + 6] = HYPERCALL_PORT;
    page[o + 7] = 0xc3; // ret
  }
}
