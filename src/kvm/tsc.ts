// The host TSC, read from JavaScript.  On this host's KVM (PVM) guest TSC =
// host TSC + offset (KVM_VCPU_TSC_OFFSET), and KVM_GET_CLOCK does not report
// host_tsc (no master clock), so the emulator reads the TSC itself to compute
// guest system time exactly as the guest's pvclock does.  Node has no rdtsc;
// a ten-byte machine-code stub in an executable page, called through koffi
// (well under a microsecond; docs/benchmarks.md), is the smallest honest way
// to get one without a native build.
//
// Safety: the page is mapped once per thread, never written after setup and
// never unmapped (it lives as long as the thread), so the function pointer
// koffi calls stays valid.
import koffi from 'koffi';
import { mmap, MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE, viewOf } from './libc.js';

// rdtsc; shl rdx, 32; or rax, rdx; ret
const RDTSC_CODE = [0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3];

let reader: (() => bigint) | null = null;

function makeReader(): () => bigint {
  const page = mmap(4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  viewOf(page, RDTSC_CODE.length).set(RDTSC_CODE);
  const proto = koffi.proto('uint64_t xenkvm_rdtsc(void)');
  const fn = koffi.decode(page, proto) as () => bigint | number;
  return () => BigInt(fn());
}

/** The host's time stamp counter. */
export function readHostTsc(): bigint {
  reader ??= makeReader();
  return reader();
}
