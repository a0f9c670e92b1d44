// The emulated domain's Xen state that is not per vCPU (hypercall page,
// shared_info placement, HVM params), kept in a SharedArrayBuffer so that
// every vCPU thread serves hypercalls against the same state without a
// round trip to the main thread.  Writers are rare (boot-time setup); 64-bit
// words are read and written whole, so no reader sees a torn value.
import { HVM_NR_PARAMS, type ShutdownReasonName } from './abi.js';

export const INVALID_GPA = 0xffffffffffffffffn;

const W = { hypercallPageGpa: 0, sharedInfoGpa: 1, longMode: 2, hvmParams: 8 } as const;
const WORDS = W.hvmParams + HVM_NR_PARAMS;

export class DomainState {
  readonly sab: SharedArrayBuffer;
  private readonly w: BigUint64Array;
  /** HVM params by index, shared. */
  readonly hvmParams: BigUint64Array;

  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer(WORDS * 8);
    this.w = new BigUint64Array(this.sab, 0, WORDS);
    this.hvmParams = new BigUint64Array(this.sab, W.hvmParams * 8, HVM_NR_PARAMS);
    if (!sab) {
      this.hypercallPageGpa = INVALID_GPA;
      this.sharedInfoGpa = INVALID_GPA;
    }
  }

  /** GPA of the hypercall page, or INVALID_GPA before the guest asked for one. */
  get hypercallPageGpa(): bigint {
    return Atomics.load(this.w, W.hypercallPageGpa);
  }
  set hypercallPageGpa(v: bigint) {
    Atomics.store(this.w, W.hypercallPageGpa, v);
  }
  /** GPA where shared_info was placed (XENMEM_add_to_physmap), or INVALID_GPA. */
  get sharedInfoGpa(): bigint {
    return Atomics.load(this.w, W.sharedInfoGpa);
  }
  set sharedInfoGpa(v: bigint) {
    Atomics.store(this.w, W.sharedInfoGpa, v);
  }
  /** Latched by the hypercall-page MSR write: 64-bit shared_info layout. */
  get longMode(): boolean {
    return Atomics.load(this.w, W.longMode) !== 0n;
  }
  set longMode(v: boolean) {
    Atomics.store(this.w, W.longMode, v ? 1n : 0n);
  }
}

/** What hypercalls may ask of the machine around them. */
export interface DomainServices {
  consoleWrite(bytes: Uint8Array): void;
  shutdown(reason: ShutdownReasonName): void;
  /** Logs a message once per key (unknown hypercalls, odd arguments). */
  warnOnce(key: string, message: string): void;
  /** SCHEDOP_block: returns once an event is pending for `vcpu` (or the vCPU must stop). */
  block(vcpu: number): bigint;
  /** SCHEDOP_poll: returns once a listed port is pending, at `timeoutNs` (guest time; 0 = none), or on a stop request. */
  poll(vcpu: number, ports: number[], timeoutNs: bigint): bigint;
  /** VCPUOP_up: start `vcpu` from its stored context. */
  startVcpu(vcpu: number): void;
  /** EVTCHNOP_send on a backend port: tell backend `id` (tables.ts BackendId) to look at its ring. */
  notifyBackend(id: number): void;
}
