// Emulator state every thread needs (vCPU threads serving hypercalls, the
// timer thread, the main thread for QMP and snapshots), kept in
// SharedArrayBuffers and attached to by each thread.  Writers that change a
// table's structure (bind, close) take `lock`; hot readers (send, timers) read
// single words, which JavaScript never tears.
import { NR_VIRQS } from './abi.js';
import { DomainState, INVALID_GPA } from './domain.js';
import { GrantTable } from './gnttab/table.js';
import { MemoryReservation, memoryBufferBytes } from './memory/reservation.js';

export const MAX_PORTS = 4096;

/**
 * Port types as EVTCHNOP_status reports them, and `backend`: a port whose
 * peer is a backend of the emulator's (console, xenstore, devices) in
 * domain 0, which status reports as interdomain.
 */
export const PortType = { closed: 0, unbound: 1, interdomain: 2, pirq: 3, virq: 4, ipi: 5, backend: 6 } as const;

/** The emulator's backends, by the id a backend port holds as its value (also its port number in domain 0). */
export const BackendId = { console: 1, xenstore: 2 } as const;

/** Per-port fields in `ports` (Int32Array, PORT_STRIDE words per port). */
export const PortField = {
  type: 0,
  /** vCPU notified when the port becomes pending. */
  vcpu: 1,
  /** VIRQ number, remote port (interdomain), remote domid (unbound) or backend id (backend). */
  value: 2,
} as const;
const PORT_STRIDE = 3;

/** Per-vCPU words in `vcpus` (BigUint64Array, VCPU_STRIDE words per vCPU). */
export const VcpuField = {
  vcpuInfoGpa: 0,
  vcpuInfoDefaultGpa: 1,
  timeInfoGpa: 2,
  runstateGpa: 3,
  callbackVector: 4,
  singleshotNs: 5,
  periodicPeriodNs: 6,
  periodicNextNs: 7,
  up: 8,
  /** VCPUOP_initialise stored a start context (CTX words) not yet applied. */
  startPending: 9,
  /** The vCPU is in SCHEDOP_poll: wake it on any pending port. */
  polling: 10,
  /** The timer thread is firing one of this vCPU's timers (stop waits it out). */
  timerFiring: 11,
  virq: 16,
  /** struct vcpu_hvm_context, 128 bytes. */
  ctx: 16 + NR_VIRQS,
} as const;
export const HVM_CONTEXT_BYTES = 128;
const VCPU_STRIDE = VcpuField.ctx + HVM_CONTEXT_BYTES / 8;

/** Words in `clock` (BigInt64Array): the pvclock reference every vcpu_time_info carries. */
export const ClockField = { tsc0: 0, ns0: 1, mul: 2, shift: 3, tscOffset: 4, wcSec: 5, wcNsec: 6 } as const;
const CLOCK_WORDS = 8;

/** Int32 words in `control`: the port-table lock and the timer thread's wake word. */
export const SyncField = {
  lock: 0,
  timerWake: 1,
  timerStop: 2,
  /** Set while the machine is paused: timers must not fire into a guest being saved. */
  timerPause: 3,
  /** The timer thread's answer: 1 while it honours timerPause. */
  timerParked: 4,
  /** 1 while a live migration tracks pages the emulator writes (GuestAccess.write marks `dirty`). */
  dirtyTracking: 5,
  /** The timer thread's OS thread id once it runs (for scheduling, migrate/live/pause/realtime.ts). */
  timerTid: 6,
} as const;
const SYNC_WORDS = 8;

export interface XenSharedBuffers {
  domain: SharedArrayBuffer;
  ports: SharedArrayBuffer;
  vcpus: SharedArrayBuffer;
  clock: SharedArrayBuffer;
  sync: SharedArrayBuffer;
  /** Pages the emulator wrote while `SyncField.dirtyTracking` is set: bit i&31 of word i>>5 for page i (KVM's dirty log layout). */
  dirty?: SharedArrayBuffer;
  /** The grant table's version, size and frame placement (gnttab/table.ts). */
  gnttab: SharedArrayBuffer;
  /** The memory reservation (memory/reservation.ts), sized for `ramBytes` of RAM. */
  memory?: SharedArrayBuffer;
  ramBytes?: number;
  nrVcpus: number;
}

export class XenShared {
  readonly buffers: XenSharedBuffers;
  readonly domain: DomainState;
  readonly ports: Int32Array;
  readonly vcpus: BigUint64Array;
  /** The same words, signed: Atomics.wait takes BigInt64Array only. */
  private readonly vcpusSigned: BigInt64Array;
  readonly clock: BigInt64Array;
  readonly sync: Int32Array;
  readonly dirty: Int32Array;
  readonly grants: GrantTable;
  /** Ballooned pages, unmapped grants and the guest's own memory map. */
  readonly memory: MemoryReservation;
  readonly nrVcpus: number;

  private constructor(b: XenSharedBuffers) {
    this.buffers = b;
    this.nrVcpus = b.nrVcpus;
    this.domain = new DomainState(b.domain);
    this.ports = new Int32Array(b.ports);
    this.vcpus = new BigUint64Array(b.vcpus);
    this.vcpusSigned = new BigInt64Array(b.vcpus);
    this.clock = new BigInt64Array(b.clock);
    this.sync = new Int32Array(b.sync);
    this.dirty = new Int32Array(b.dirty ?? new SharedArrayBuffer(0));
    this.grants = new GrantTable(b.gnttab);
    const ramBytes = b.ramBytes ?? 0;
    this.memory = new MemoryReservation(b.memory ?? new SharedArrayBuffer(memoryBufferBytes(ramBytes)), ramBytes);
  }

  /** `ramBytes` sizes the emulator's dirty-page bitmap (0: no tracking). */
  static create(nrVcpus: number, ramBytes = 0): XenShared {
    const domain = new DomainState();
    const s = new XenShared({
      domain: domain.sab,
      ports: new SharedArrayBuffer(MAX_PORTS * PORT_STRIDE * 4),
      vcpus: new SharedArrayBuffer(nrVcpus * VCPU_STRIDE * 8),
      clock: new SharedArrayBuffer(CLOCK_WORDS * 8),
      sync: new SharedArrayBuffer(SYNC_WORDS * 4),
      dirty: new SharedArrayBuffer(Math.ceil(ramBytes / 4096 / 64) * 8),
      gnttab: new GrantTable().sab,
      memory: new SharedArrayBuffer(memoryBufferBytes(ramBytes)),
      ramBytes,
      nrVcpus,
    });
    for (let v = 0; v < nrVcpus; v++) {
      for (const f of [
        VcpuField.vcpuInfoGpa,
        VcpuField.vcpuInfoDefaultGpa,
        VcpuField.timeInfoGpa,
        VcpuField.runstateGpa,
      ])
        s.setVcpu(v, f, INVALID_GPA);
    }
    s.setVcpu(0, VcpuField.up, 1n);
    return s;
  }

  static attach(b: XenSharedBuffers): XenShared {
    return new XenShared(b);
  }

  // --- ports ---
  portType(port: number): number {
    return Atomics.load(this.ports, port * PORT_STRIDE + PortField.type);
  }
  portVcpu(port: number): number {
    return Atomics.load(this.ports, port * PORT_STRIDE + PortField.vcpu);
  }
  portValue(port: number): number {
    return Atomics.load(this.ports, port * PORT_STRIDE + PortField.value);
  }
  setPort(port: number, type: number, vcpu: number, value: number): void {
    const o = port * PORT_STRIDE;
    Atomics.store(this.ports, o + PortField.vcpu, vcpu);
    Atomics.store(this.ports, o + PortField.value, value);
    Atomics.store(this.ports, o + PortField.type, type);
  }
  setPortVcpu(port: number, vcpu: number): void {
    Atomics.store(this.ports, port * PORT_STRIDE + PortField.vcpu, vcpu);
  }

  // --- vCPUs ---
  vcpu(v: number, f: number): bigint {
    return Atomics.load(this.vcpus, v * VCPU_STRIDE + f);
  }
  setVcpu(v: number, f: number, value: bigint): void {
    Atomics.store(this.vcpus, v * VCPU_STRIDE + f, value);
  }
  /** Waits (at most `ms`) while word `f` of vCPU `v` equals `value`; pair with notifyVcpuWord. */
  waitVcpuWord(v: number, f: number, value: bigint, ms: number): void {
    Atomics.wait(this.vcpusSigned, v * VCPU_STRIDE + f, value, ms);
  }
  notifyVcpuWord(v: number, f: number): void {
    Atomics.notify(this.vcpusSigned, v * VCPU_STRIDE + f);
  }
  compareAndSetVcpu(v: number, f: number, expected: bigint, value: bigint): boolean {
    return Atomics.compareExchange(this.vcpus, v * VCPU_STRIDE + f, expected, value) === expected;
  }
  virqPort(v: number, virq: number): number {
    return Number(this.vcpu(v, VcpuField.virq + virq));
  }
  setVirqPort(v: number, virq: number, port: number): void {
    this.setVcpu(v, VcpuField.virq + virq, BigInt(port));
  }
  /** The vcpu_info in use: the registered one, else the default slot in shared_info. */
  vcpuInfoGpa(v: number): bigint {
    const reg = this.vcpu(v, VcpuField.vcpuInfoGpa);
    return reg !== INVALID_GPA ? reg : this.vcpu(v, VcpuField.vcpuInfoDefaultGpa);
  }
  /** View of a vCPU's saved start context (struct vcpu_hvm_context). */
  contextBytes(v: number): Uint8Array {
    return new Uint8Array(this.buffers.vcpus, (v * VCPU_STRIDE + VcpuField.ctx) * 8, HVM_CONTEXT_BYTES);
  }

  /** Notes an emulator write at RAM offset `at` while a migration tracks dirty pages (one load otherwise). */
  noteWrite(at: number): void {
    if (Atomics.load(this.sync, SyncField.dirtyTracking) === 0) return;
    const page = Math.floor(at / 4096);
    const word = Math.floor(page / 32);
    if (word < this.dirty.length) Atomics.or(this.dirty, word, 1 << (page & 31));
  }

  // --- clock ---
  clockWord(f: number): bigint {
    return Atomics.load(this.clock, f);
  }
  setClockWord(f: number, v: bigint): void {
    Atomics.store(this.clock, f, v);
  }

  // --- locking and wake-ups ---
  /** Serialises port-table changes between vCPU threads (bind/close are rare). */
  withLock<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.sync, SyncField.lock, 0, 1) !== 0)
      Atomics.wait(this.sync, SyncField.lock, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.sync, SyncField.lock, 0);
      Atomics.notify(this.sync, SyncField.lock, 1);
    }
  }

  /** A timer changed: the timer thread recomputes its next deadline. */
  wakeTimers(): void {
    Atomics.add(this.sync, SyncField.timerWake, 1);
    Atomics.notify(this.sync, SyncField.timerWake);
  }
}
