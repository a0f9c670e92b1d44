// The layout of each vCPU's control block: Int32 words in one
// SharedArrayBuffer that every emulator thread maps.  The machine's pause
// handshake (machine/vcpu-control.ts) uses REQ, STATE and TID; hypercall
// handlers use WAKE to end another vCPU's SCHEDOP_block or poll early; the
// machine's halt probe uses PROBE.
export const Ctl = {
  REQ: 0,
  STATE: 1,
  TID: 2,
  /** Bumped and notified to end a SCHEDOP_block/poll wait or a park early. */
  WAKE: 3,
  /** The halt probe's round (machine.ts): the vCPU answers each new value once, after its next KVM_RUN. */
  PROBE: 4,
  SIZE: 5,
} as const;
