// XenMachine: a guest, its KVM VM and the Xen emulator around it.  Owns guest
// RAM, the VM and the vCPU threads; collects console output and the outcome
// (how the guest stopped); pauses and resumes the guest as a whole.
import { InputError } from '../errors.js';
import { MAX_VCPUS } from './config.js';
import { GuestRam, HostPages } from '../kvm/guest-ram.js';
import { Kvm, KvmVm, encodeCpuid } from '../kvm/kvm.js';
import { KvmVcpu, createVcpuHandle, destroyVcpuHandle, type VcpuHandle } from '../kvm/vcpu.js';
import {
  CpuStateContext,
  getCpuState,
  getVcpuCpuid,
  putCpuState,
  readCpuState,
  type CpuState,
} from '../kvm/cpu-state-io.js';
import { getIrqchip, getKvmclock, putIrqchip, putKvmclock } from '../kvm/vm-state-io.js';
import type { IrqchipState, KvmclockState } from '../kvm/state/index.js';
import { Cap, KVM, KVM_MEM_LOG_DIRTY_PAGES, KVM_MSR_EXIT_REASON_FILTER } from '../kvm/ioctls.js';
import { NoKvmError } from '../errors.js';
import { XEN_HYPERCALL_MSR } from '../xen/abi.js';
import { guestCpuid } from '../xen/cpuid.js';
import type { Worker } from 'node:worker_threads';
import { threadPool, TIMER_WORKER_URL } from './thread-pool.js';
import { vcpuTscKhz, vcpuTscOffset } from '../kvm/clock.js';
import { loadPvh } from './pvh-loader.js';
import { BackendId, SyncField, VcpuField, XenShared } from '../xen/tables.js';
import { guestNowNs, publishVcpuTime, publishWallclock, setClockReference } from '../xen/time/clock.js';
import { VcpuThread } from './vcpu-thread.js';
import { Ctl, Req, VcpuState, type Outcome, type VcpuMessage } from './vcpu-control.js';
import { XenContext, type XenThreadResources } from '../xen/context.js';
import { mark, TRACING } from '../trace.js';
import { MemoryLayout, memSizeProblem, NR_SPECIAL_PAGES, SPECIAL_GPA } from '../xen/memory/layout.js';
import { XEN_PAGES_BYTES } from '../xen/memory/guest-phys.js';
import type { PvBackend } from './backend.js';
import { setUpPlatform } from './platform.js';
import { XenstoreServer } from '../xen/xenstore/server.js';
import { XenstoreBackend, writeGuestTree, type XenstoreToolstack } from './xenstore-backend.js';
import { ConsoleBackend } from './console-backend.js';
import type { MachineStateAccess } from './component.js';
import type { FrameSlots } from '../xen/gnttab/slots.js';

export type { Outcome } from './vcpu-control.js';

export interface MachineOptions {
  memBytes: number;
  vcpus: number;
  /** Guest console bytes (Xen console_io and the debug port). */
  console: (bytes: Uint8Array) => void;
  /** Emulator warnings, one line each. */
  log: (message: string) => void;
  /** RAM about to be filled from a stream: huge pages only from start() on (GuestRam). */
  incoming?: boolean;
  /**
   * Guest RAM mapped (and perhaps filled) by the caller, memBytes long,
   * owned by the machine once create() returns (after a failed create() the
   * caller destroys it; destroy is idempotent).  A restore reads the file
   * into it while the emulator's modules are still loading.
   */
  ram?: GuestRam;
}

export interface BootOptions extends MachineOptions {
  elf: Uint8Array;
  elfName: string;
  cmdline: string;
}

export { MAX_VCPUS } from './config.js';
/** Capabilities the userspace Xen transport cannot do without. */
const REQUIRED_CAPS: ReadonlyArray<[number, string]> = [
  [Cap.IRQCHIP, 'in-kernel irqchip'],
  [Cap.USER_MEMORY, 'user memory'],
  [Cap.SYNC_REGS, 'sync regs'],
  [Cap.IMMEDIATE_EXIT, 'immediate exit'],
  [Cap.X86_USER_SPACE_MSR, 'user-space MSR exits'],
  [Cap.X86_MSR_FILTER, 'MSR filter'],
  [Cap.SIGNAL_MSI, 'MSI injection'],
];

export class XenMachine implements MachineStateAccess {
  readonly kvm: Kvm;
  readonly vm: KvmVm;
  readonly ram: GuestRam;
  /** The emulator's pages mapped into the guest: special pages, grant frames (xen/memory/layout.ts). */
  readonly xenPages: HostPages;
  readonly xen: XenShared;
  readonly handles: VcpuHandle[] = [];
  /** Every vCPU's control block (see vcpu-control.ts). */
  readonly control: SharedArrayBuffer;
  private timerThread: Worker | null = null;
  private mainContext: XenContext | null = null;
  private readonly opts: MachineOptions;
  private threads: VcpuThread[] = [];
  private outcomeWaiters: Array<(o: Outcome) => void> = [];
  private finalOutcome: Outcome | null = null;
  /** What to save of a vCPU on this VM, and the ioctl buffers for it (set by create()). */
  cpuStateContext!: CpuStateContext;
  /** vCPU 0's CPUID as KVM applied it (set by create()): what a restored guest may rely on. */
  effectiveCpuid!: CpuState['cpuid'];
  private destroyed = false;
  private readonly backends = new Map<number, PvBackend>();
  private paused = true;
  /** The xenstore daemon; a restore replaces it (sections.ts) before start() attaches the ring. */
  xenstore = new XenstoreServer();
  private xenstoreBackend: XenstoreBackend | null = null;
  /** Built here (boot) rather than restored: its platform pages start empty. */
  private booted = false;
  /** The PV console backend; attached to the guest's ring by start() (console-backend.ts). */
  readonly pvConsole: ConsoleBackend;
  private readonly haltProbe = { timer: null as NodeJS.Timeout | null, round: 0, idle: new Set<number>(), rounds: 0 };

  private constructor(kvm: Kvm, vm: KvmVm, ram: GuestRam, xenPages: HostPages, opts: MachineOptions) {
    this.kvm = kvm;
    this.vm = vm;
    this.ram = ram;
    this.xenPages = xenPages;
    this.opts = opts;
    this.xen = XenShared.create(opts.vcpus, ram.size);
    this.control = new SharedArrayBuffer(opts.vcpus * Ctl.SIZE * 4);
    const m = this;
    this.pvConsole = new ConsoleBackend({
      get context() {
        return m.context;
      },
      xenPages: xenPages.bytes,
      get backendsActive() {
        return m.backendsActive;
      },
      print: (bytes) => opts.console(bytes),
      log: (message) => opts.log(message),
    });
  }

  /** What the console backend holds outside the page (the xen_console section). */
  get consoleService() {
    return this.pvConsole.service;
  }

  /** Backends may touch their rings: the guest runs (see kickBackend). */
  get backendsActive(): boolean {
    return !this.paused && !this.finalOutcome;
  }

  get domain() {
    return this.xen.domain;
  }

  get ramBytes(): number {
    return this.ram.size;
  }

  get xenPageBytes(): Uint8Array {
    return this.xenPages.bytes;
  }

  /** Where guest RAM sits in guest-physical space. */
  get layout(): MemoryLayout {
    return this.context.phys.layout;
  }

  private resources(): XenThreadResources {
    return {
      ramAddr: this.ram.hostAddr,
      ramSize: this.ram.size,
      xenPagesAddr: this.xenPages.hostAddr,
      vmFd: this.vm.fd,
      xen: this.xen.buffers,
      control: this.control,
    };
  }

  static create(opts: MachineOptions): XenMachine {
    if (!Number.isInteger(opts.vcpus) || opts.vcpus < 1 || opts.vcpus > MAX_VCPUS)
      throw new InputError(`--vcpus must be 1..${MAX_VCPUS}, got ${opts.vcpus}`);
    const memProblem = memSizeProblem(opts.memBytes);
    if (memProblem) throw new InputError(`--mem ${memProblem}, got ${opts.memBytes} bytes`);
    const kvm = Kvm.open();
    const cleanup: Array<() => void> = [() => kvm.close()];
    try {
      for (const [cap, what] of REQUIRED_CAPS)
        if (kvm.check(cap) === 0) throw new NoKvmError(`this host's KVM lacks ${what} (KVM_CAP ${cap})`);
      const vm = new KvmVm(kvm);
      cleanup.unshift(() => vm.destroy());
      if (opts.ram && opts.ram.size !== opts.memBytes)
        throw new RangeError(`guest RAM of ${opts.ram.size} bytes for a machine of ${opts.memBytes}`);
      const ram = opts.ram ?? new GuestRam(opts.memBytes, { hugePages: !opts.incoming });
      cleanup.unshift(() => ram.destroy());
      mapGuestRam(vm, ram, 0);
      const xenPages = new HostPages(XEN_PAGES_BYTES);
      cleanup.unshift(() => xenPages.destroy());
      vm.setMemory(SPECIAL_PAGES_SLOT, SPECIAL_GPA, NR_SPECIAL_PAGES * 4096, xenPages.hostAddr, 0);
      vm.trapMsrs([XEN_HYPERCALL_MSR], KVM_MSR_EXIT_REASON_FILTER);
      const m = new XenMachine(kvm, vm, ram, xenPages, opts);
      cleanup.unshift(() => m.handles.forEach(destroyVcpuHandle));
      const supported = kvm.supportedCpuid();
      for (let i = 0; i < opts.vcpus; i++) {
        const h = createVcpuHandle(vm, i);
        m.handles.push(h);
        new KvmVcpu(h).ioctl(KVM.SET_CPUID2, encodeCpuid(guestCpuid(supported, i)), 'KVM_SET_CPUID2');
      }
      // Probed now, while no vCPU runs: the probe reads MSRs on vCPU 0, which a
      // running vCPU would block until its next exit.
      m.cpuStateContext = CpuStateContext.probe(vm, m.handles[0]!.fd);
      m.effectiveCpuid = getVcpuCpuid(m.handles[0]!.fd, m.cpuStateContext);
      m.spawnThreads();
      return m;
    } catch (e) {
      for (const f of cleanup) f();
      throw e;
    }
  }

  /** Creates a machine and loads a PVH guest into it, ready to start. */
  static boot(opts: BootOptions): XenMachine {
    const m = XenMachine.create(opts);
    try {
      const loaded = loadPvh(opts.elf, m.ram.chunks[0]!, m.layout, opts.cmdline, opts.elfName);
      setUpPlatform(m.context);
      writeGuestTree(m.context, m.xenstore, opts);
      m.booted = true;
      const bsp = new KvmVcpu(m.handles[0]!);
      bsp.setSregs(loaded.sregs);
      bsp.setRegs(loaded.gpr);
      m.setGuestTime(0n);
    } catch (e) {
      m.destroy();
      throw e;
    }
    return m;
  }

  /** The emulator state as seen from the main thread (QMP, snapshots). */
  get context(): XenContext {
    this.mainContext ??= new XenContext(this.resources());
    return this.mainContext;
  }

  /**
   * Sets guest system time to `ns0` now (0 at boot; the saved time on restore)
   * from vCPU 0's TSC frequency and offset.
   */
  setGuestTime(ns0: bigint): void {
    const fd = this.handles[0]!.fd;
    setClockReference(this.xen, vcpuTscKhz(fd), vcpuTscOffset(fd), ns0, BigInt(Date.now()) * 1_000_000n);
  }

  /** Re-arms vCPU `v`'s periodic timer one period after guest time `nowNs` (after a restore). */
  rearmPeriodic(v: number, nowNs: bigint): void {
    const period = this.xen.vcpu(v, VcpuField.periodicPeriodNs);
    this.xen.setVcpu(v, VcpuField.periodicNextNs, period === 0n ? 0n : nowNs + period);
  }

  // What the state components (sections.ts) reach KVM and guest time through.

  get vcpuCount(): number {
    return this.handles.length;
  }

  getCpuState(v: number): CpuState {
    return getCpuState(this.handles[v]!.fd, this.cpuStateContext);
  }

  sampleCpuState(): CpuState {
    return readCpuState(this.cpuStateContext);
  }

  putCpuState(v: number, state: CpuState): void {
    putCpuState(this.handles[v]!.fd, state, this.cpuStateContext, `cpu[${v}]`);
  }

  getIrqchip(): IrqchipState {
    return getIrqchip(this.vm.fd);
  }

  putIrqchip(state: IrqchipState): void {
    putIrqchip(this.vm.fd, state);
  }

  getKvmclock(): KvmclockState {
    return getKvmclock(this.vm.fd);
  }

  putKvmclock(state: KvmclockState): void {
    putKvmclock(this.vm.fd, state);
  }

  tscKhz(): number {
    return vcpuTscKhz(this.handles[0]!.fd);
  }

  guestNowNs(): bigint {
    return guestNowNs(this.xen);
  }

  get frameSlots(): FrameSlots {
    return this.context.frameSlots;
  }

  publishTime(): void {
    const ctx = this.context;
    for (let v = 0; v < this.handles.length; v++) publishVcpuTime(ctx, v);
    publishWallclock(ctx);
  }

  /**
   * Live migration: turns KVM dirty-page logging on guest RAM (its slots with
   * KVM_MEM_LOG_DIRTY_PAGES) and the emulator's own dirty marks on or off.
   */
  setDirtyLogging(on: boolean): void {
    mapGuestRam(this.vm, this.ram, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    if (on) this.xen.dirty.fill(0);
    Atomics.store(this.xen.sync, SyncField.dirtyTracking, on ? 1 : 0);
  }

  /**
   * Starts (or takes pre-started, thread-pool.ts) the timer thread and every
   * vCPU thread, parked: loading a Worker (koffi, the emulator modules) takes
   * tens of milliseconds of CPU (docs/benchmarks.md), so it overlaps with
   * booting, restoring or receiving a guest instead of adding to its start.
   */
  private spawnThreads(): void {
    const r = this.resources();
    const ctl = new Int32Array(this.control);
    for (let v = 0; v < this.handles.length; v++) Atomics.store(ctl, v * Ctl.SIZE + Ctl.REQ, Req.PAUSE);
    Atomics.store(this.xen.sync, SyncField.timerPause, 1);
    const onError = (e: Error) => this.finish({ kind: 'fault', detail: `emulator thread error: ${e.message}` });
    this.timerThread = threadPool.take(TIMER_WORKER_URL, r);
    this.timerThread.on('error', onError);
    this.threads = this.handles.map(
      (handle) => new VcpuThread({ ...r, handle }, (msg) => this.onMessage(msg), onError),
    );
    // Spares beyond this machine's vCPUs (a guess that was too high) are not needed.
    void threadPool.discard();
  }

  /**
   * Lets the guest run (the threads were started parked by create()).
   * `deferHugePages`: the caller calls `ram.adviseHugePages()` itself once it
   * has told whoever waits that the guest runs.  In a scheduler trace of a
   * migration destination, the main thread slept inside start() with a core
   * idle, before it could answer its source (docs/benchmarks.md, "Log");
   * madvise, which takes the mmap lock for writing while the just-resumed
   * vCPUs fault guest memory in, is the call there that can sleep.
   */
  start(opts: { deferHugePages?: boolean } = {}): void {
    if (!opts.deferHugePages) this.ram.adviseHugePages();
    this.attachXenstore();
    if (!this.backends.has(BackendId.console) && this.pvConsole.attach())
      this.addBackend(BackendId.console, this.pvConsole);
    this.resume();
  }

  /** Serves xenstore on the guest's ring, if it has one (a guest restored from an older snapshot has none). */
  private attachXenstore(): void {
    if (this.xenstoreBackend) return;
    const b = new XenstoreBackend(this);
    this.xenstoreBackend = b;
    if (!b.attach(this.booted)) return;
    if (!this.booted) b.toolstack.forgetWatchesOfEarlierRuns();
    this.addBackend(BackendId.xenstore, b);
  }

  /** The toolstack's side of xenstore, or null when the guest has no xenstore ring. */
  get xenstoreToolstack(): XenstoreToolstack | null {
    return this.xenstoreBackend?.attached ? this.xenstoreBackend.toolstack : null;
  }

  /** An emulator warning, one line. */
  log(message: string): void {
    this.opts.log(message);
  }

  /**
   * Serves backend `id` (xen/tables.ts BackendId) from now on: its kicks
   * from the guest, and one on every resume (backend.ts).
   */
  addBackend(id: number, backend: PvBackend): void {
    this.backends.set(id, backend);
  }

  private kickBackend(id: number): void {
    // Held back while paused: resume() kicks every backend (backend.ts).
    if (!this.backendsActive) return;
    const b = this.backends.get(id);
    if (!b) {
      this.opts.log(`the guest notified backend ${id}, which this machine does not have`);
      return;
    }
    b.kick();
  }

  private onMessage(msg: VcpuMessage): void {
    switch (msg.t) {
      case 'backend':
        this.kickBackend(msg.id);
        return;
      case 'console':
        this.opts.console(msg.data);
        this.pvConsole.recordOther(msg.data);
        return;
      case 'log':
        this.opts.log(msg.message);
        return;
      case 'idle':
        if (msg.idle && msg.round === this.haltProbe.round) this.haltProbe.idle.add(msg.vcpu);
        return;
      case 'outcome':
        this.finish(msg.outcome);
    }
  }

  /**
   * Halt detection (docs/xen-abi.md "Halted guests"): while the guest runs,
   * once a second every up vCPU is asked, with a kick, whether it sits
   * halted with interrupts off.  When all were in two rounds in a row,
   * nothing can wake the guest (the emulator never sends NMIs): the run
   * ends as halted.  Rounds restart on every resume, so a pause, snapshot
   * or migration never sees a probe of its own, and answers of a round
   * before it are dropped.
   */
  private probeHalt(): void {
    const p = this.haltProbe;
    if (this.paused || this.finalOutcome) return;
    const up = this.threads.filter((t) => this.xen.vcpu(t.index, VcpuField.up) !== 0n);
    if (p.round > 0 && up.length > 0 && up.every((t) => p.idle.has(t.index))) p.rounds++;
    else p.rounds = 0;
    if (p.rounds >= HALT_PROBE_ROUNDS) {
      this.finish({ kind: 'halted' });
      return;
    }
    p.round++;
    p.idle.clear();
    for (const t of up) t.probe(p.round);
  }

  private setHaltProbe(on: boolean): void {
    const p = this.haltProbe;
    if (p.timer) clearInterval(p.timer);
    p.timer = null;
    p.rounds = 0;
    // Answers still on their way belong to a round that no longer counts.
    p.round++;
    p.idle.clear();
    if (!on) return;
    p.timer = setInterval(() => this.probeHalt(), HALT_PROBE_MS);
    p.timer.unref();
  }

  private finish(o: Outcome): void {
    if (this.finalOutcome) return;
    this.finalOutcome = o;
    this.setHaltProbe(false);
    for (const w of this.outcomeWaiters) w(o);
    this.outcomeWaiters = [];
  }

  /** Resolves with how the guest stopped; the vCPU threads are stopped by then. */
  async waitForOutcome(): Promise<Outcome> {
    const o = this.finalOutcome ?? (await new Promise<Outcome>((resolve) => this.outcomeWaiters.push(resolve)));
    await this.stopThreads();
    return o;
  }

  /**
   * The OS thread ids of the threads that pause() waits for and start()
   * wakes, the vCPU threads and the timer thread, as far as they have
   * started (for scheduling, migrate/live/pause/realtime.ts).
   */
  pauseThreadIds(): number[] {
    const timer = this.timerThread ? Atomics.load(this.xen.sync, SyncField.timerTid) : 0;
    return [...this.threads.map((t) => t.tid), timer].filter((tid) => tid > 0);
  }

  /** Every vCPU is out of KVM_RUN and parked, and no timer fires, when this resolves. */
  async pause(): Promise<void> {
    this.paused = true;
    this.setHaltProbe(false);
    const sync = this.xen.sync;
    Atomics.store(sync, SyncField.timerPause, 1);
    this.xen.wakeTimers();
    await Promise.all(this.threads.map((t) => (TRACING ? t.pause().then(() => mark(`parked.${t.index}`)) : t.pause())));
    while (this.timerThread && Atomics.load(sync, SyncField.timerParked) === 0) {
      await Atomics.waitAsync(sync, SyncField.timerParked, 0, 20).value;
    }
  }

  resume(): void {
    this.paused = false;
    if (!this.finalOutcome) this.setHaltProbe(true);
    Atomics.store(this.xen.sync, SyncField.timerPause, 0);
    this.xen.wakeTimers();
    for (const t of this.threads) t.resume();
    for (const b of this.backends.values()) b.kick();
  }

  /**
   * After start(): resolves once vCPU 0's thread runs guest code; rejects if
   * the guest stopped first or `timeoutMs` passed.  Thread wake-up is most
   * of a restored guest's start, so a confirmation must not claim it early.
   */
  async whenRunning(timeoutMs = 10_000): Promise<void> {
    const t = this.threads[0];
    if (!t || !(await t.whenRunning(timeoutMs)))
      throw new Error(`the guest did not start running within ${timeoutMs} ms`);
    if (this.status === 'shutdown') throw new Error('the guest stopped before it ran');
  }

  get running(): boolean {
    return this.threads.some((t) => t.state === VcpuState.RUNNING);
  }

  /** 'shutdown' once the guest has stopped for good, else whether any vCPU runs. */
  get status(): 'running' | 'paused' | 'shutdown' {
    if (this.finalOutcome !== null || this.destroyed) return 'shutdown';
    return this.running ? 'running' : 'paused';
  }

  /** Ends the run as if the guest had powered off (QMP quit, signals). */
  requestStop(reason: Outcome): void {
    this.finish(reason);
  }

  private async stopThreads(): Promise<void> {
    const threads = this.threads;
    this.threads = [];
    await Promise.all(threads.map((t) => t.stop()));
    const timer = this.timerThread;
    this.timerThread = null;
    if (timer) {
      Atomics.store(this.xen.sync, SyncField.timerStop, 1);
      this.xen.wakeTimers();
      await new Promise<void>((resolve) => {
        timer.once('exit', () => resolve());
      });
    }
  }

  /** Stops the guest (if running) and releases everything.  Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.setHaltProbe(false);
    await this.stopThreads();
    for (const h of this.handles) destroyVcpuHandle(h);
    this.vm.destroy();
    this.ram.destroy();
    this.xenPages.destroy();
    this.kvm.close();
  }
}

/** How often the halt probe asks, and how many rounds in a row must find every vCPU halted with interrupts off. */
const HALT_PROBE_MS = 1000;
const HALT_PROBE_ROUNDS = 2;

/** The KVM memory slot of the special pages (RAM has slots 0 and 1, one per layout region; grant frames 3 and up, xen/gnttab/slots.ts). */
const SPECIAL_PAGES_SLOT = 2;

/**
 * Registers guest RAM with KVM: one memory slot per region of the layout
 * (slot i = region i), each a window of the one host mapping.
 */
function mapGuestRam(vm: KvmVm, ram: GuestRam, flags: number): void {
  new MemoryLayout(ram.size).regions.forEach((r, slot) =>
    vm.setMemory(slot, r.gpa, r.size, ram.hostAddr + BigInt(r.offset), flags),
  );
}
