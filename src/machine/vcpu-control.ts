// The control blocks shared by the main thread and the vCPU threads: one
// Int32Array over a SharedArrayBuffer, Ctl.SIZE words per vCPU.  The main thread writes REQ and kicks;
// the vCPU thread acts on it at its next exit and publishes STATE.  Messages
// (console, outcome) travel by postMessage; only the run/pause handshake,
// which must work while the main thread waits, lives here.

export { Ctl } from '../xen/vcpu/control-block.js';

export const Req = {
  /** Run the guest. */
  RUN: 0,
  /** Stop at the next exit and wait for RUN or STOP. */
  PAUSE: 1,
  /** Leave the run loop for good. */
  STOP: 2,
} as const;

export const VcpuState = {
  STARTING: 0,
  RUNNING: 1,
  PAUSED: 2,
  STOPPED: 3,
} as const;

export type VcpuStateName = keyof typeof VcpuState;

/** Messages a vCPU thread posts to the main thread. */
export type VcpuMessage =
  | { t: 'console'; data: Uint8Array }
  | { t: 'log'; key: string; message: string }
  | { t: 'outcome'; outcome: Outcome }
  /** EVTCHNOP_send on a backend port (xen/tables.ts BackendId). */
  | { t: 'backend'; id: number }
  /** The answer to halt probe `round`: halted with interrupts off (nothing but an NMI could wake it). */
  | { t: 'idle'; vcpu: number; round: number; idle: boolean };

export type ShutdownOutcome = { kind: 'shutdown'; reason: import('../xen/abi.js').ShutdownReasonName };
export type Outcome =
  | ShutdownOutcome
  | { kind: 'halted' }
  /** Ended from outside (QMP quit, a signal): the guest did not choose it. */
  | { kind: 'quit'; by: string }
  | { kind: 'fault'; detail: string };
