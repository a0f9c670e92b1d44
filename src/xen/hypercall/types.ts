// The shape of one hypercall and what a handler may use to serve it.  Kept
// apart from the dispatcher so that the per-subsystem handlers it calls can
// name these types without importing the dispatcher back.
import type { DomainServices, DomainState } from '../domain.js';
import type { GuestAccess } from '../guest-access.js';
import type { XenContext } from '../context.js';

/** One hypercall as the guest issued it. */
export interface HypercallCall {
  nr: number;
  /** Arguments 1..5, already zero-extended to 32 bits for compat callers. */
  args: BigUint64Array;
  /** 64-bit ABI (EFER.LMA && CS.L) rather than compat. */
  is64: boolean;
  vcpu: number;
  /**
   * Set by a handler that stopped early to let the guest run (Xen's
   * hypercall continuation): the first argument to re-issue the same
   * hypercall with; the caller re-enters the hypercall stub.  null otherwise.
   */
  restart: bigint | null;
}

export interface HypercallEnv {
  xen: XenContext;
  domain: DomainState;
  mem: GuestAccess;
  services: DomainServices;
}
