// The main thread's side of one vCPU thread: starts the Worker, asks it to
// pause, resume or stop through its control block, and kicks it out of
// KVM_RUN (immediate_exit + SIGUSR2 to its tid) so that a request is seen
// even while the guest spins or halts.
import type { Worker } from 'node:worker_threads';
import { SIGUSR2, tgkill } from '../kvm/libc.js';
import { VcpuKick, type VcpuHandle } from '../kvm/vcpu.js';
import { Ctl, Req, VcpuState, type VcpuMessage } from './vcpu-control.js';
import type { VcpuWorkerData } from './vcpu-worker.js';
import { threadPool, VCPU_WORKER_URL } from './thread-pool.js';

let signalHandlerInstalled = false;
/** libuv's handler makes SIGUSR2 harmless to the process while it interrupts KVM_RUN. */
function installKickHandler(): void {
  if (signalHandlerInstalled) return;
  signalHandlerInstalled = true;
  process.on('SIGUSR2', () => {});
}

/** How often pause() kicks a vCPU thread again while it has not parked. */
const KICK_AGAIN_MS = 2;

/**
 * Threads still running.  When the process exits (even on an uncaught
 * exception) Node joins every Worker, and a vCPU halted inside KVM_RUN with
 * nothing to wake it would never return: tell each to stop and kick it out.
 */
const live = new Set<VcpuThread>();
process.on('exit', () => {
  for (const t of live) t.requestStopNow();
});

export class VcpuThread {
  readonly index: number;
  private readonly ctl: Int32Array;
  private readonly base: number;
  private readonly kicker: VcpuKick;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(data: VcpuWorkerData, onMessage: (m: VcpuMessage) => void, onError: (e: Error) => void) {
    installKickHandler();
    const handle: VcpuHandle = data.handle;
    this.index = handle.index;
    this.ctl = new Int32Array(data.control);
    this.base = this.index * Ctl.SIZE;
    this.kicker = new VcpuKick(handle);
    this.worker = threadPool.take(VCPU_WORKER_URL, data);
    this.worker.on('message', onMessage);
    this.worker.on('error', onError);
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  /** Synchronous stop request (process exit): the thread leaves KVM_RUN and its loop. */
  requestStopNow(): void {
    this.request(Req.STOP);
  }

  get state(): number {
    return Atomics.load(this.ctl, this.base + Ctl.STATE);
  }

  private request(req: number): void {
    Atomics.store(this.ctl, this.base + Ctl.REQ, req);
    // A thread parked or waiting in SCHEDOP_block/poll sleeps on WAKE.
    Atomics.add(this.ctl, this.base + Ctl.WAKE, 1);
    Atomics.notify(this.ctl, this.base + Ctl.WAKE);
    this.kick();
  }

  /** The OS thread's id once the worker has started, else 0. */
  get tid(): number {
    return Atomics.load(this.ctl, this.base + Ctl.TID);
  }

  /** Gets the thread out of KVM_RUN soon; harmless when it is not in it. */
  kick(): void {
    this.kicker.requestExit();
    const tid = this.tid;
    if (tid > 0 && this.state === VcpuState.RUNNING) tgkill(process.pid, tid, SIGUSR2);
  }

  /** Asks the vCPU whether it sits halted with interrupts off (answered by an `idle` message); kicks it out of KVM_RUN to answer. */
  probe(round: number): void {
    Atomics.store(this.ctl, this.base + Ctl.PROBE, round);
    this.kick();
  }

  /** Resolves once the vCPU is parked (or gone). */
  async pause(): Promise<void> {
    this.request(Req.PAUSE);
    await this.waitState((s) => s === VcpuState.PAUSED || s === VcpuState.STOPPED);
  }

  resume(): void {
    Atomics.store(this.ctl, this.base + Ctl.REQ, Req.RUN);
    Atomics.add(this.ctl, this.base + Ctl.WAKE, 1);
    Atomics.notify(this.ctl, this.base + Ctl.WAKE);
  }

  /** Ends the thread; resolves when the Worker has exited.  Idempotent. */
  async stop(): Promise<void> {
    this.request(Req.STOP);
    await this.exited;
  }

  /** Resolves once the thread runs its vCPU (or has stopped); false after `timeoutMs`.  Does not kick. */
  async whenRunning(timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const s = this.state;
      if (s === VcpuState.RUNNING || s === VcpuState.STOPPED) return true;
      const left = end - performance.now();
      if (left <= 0) return false;
      await Atomics.waitAsync(this.ctl, this.base + Ctl.STATE, s, left).value;
    }
  }

  private async waitState(ok: (s: number) => boolean): Promise<void> {
    for (;;) {
      const s = this.state;
      if (ok(s)) return;
      // Kick again in case the first signal landed between the thread's
      // check of REQ and its entry into KVM_RUN (immediate_exit covers it,
      // but a halted vCPU needs the signal), and for a vCPU that runs on
      // after a kick to deliver a queued breakpoint (vcpu-worker.ts,
      // breakpointPending): each such run lasts until this next kick.
      this.kick();
      const r = Atomics.waitAsync(this.ctl, this.base + Ctl.STATE, s, KICK_AGAIN_MS);
      await r.value;
    }
  }
}
