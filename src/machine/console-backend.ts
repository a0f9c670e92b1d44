// The PV console backend: serves the guest's console ring (Xen's
// io/console.h, xen/console/ring.ts) from the main thread.  Guest output goes
// where console_io output goes (the run's stdout) and into the console log;
// input comes from whoever calls input() (the run's stdin, `xenkvm console`
// through the control socket) and waits in a bounded queue
// (xen/console/service.ts) until the guest's ring has room.
//
// It touches the page only while the guest runs (kick is held back while the
// machine is paused, and input() queues then), so a snapshot sees the ring
// and the queue consistent.  A guest without a console ring (CONSOLE_PFN 0:
// a snapshot of an older build) leaves it idle; a CONSOLE_PFN that is not
// the console special page is never followed into RAM.
// docs/xen-abi.md, "PV console".
import { HvmParam } from '../xen/abi.js';
import type { XenContext } from '../xen/context.js';
import { ConsoleRing } from '../xen/console/ring.js';
import { ConsoleService, describeFault, PENDING_INPUT_MAX } from '../xen/console/service.js';
import type { LogRead } from '../xen/console/log.js';
import { SPECIAL_PFN_BASE, SpecialPage } from '../xen/memory/layout.js';
import { BackendId } from '../xen/tables.js';
import { backendPort, notifyGuest, type PvBackend } from './backend.js';

/** What the backend needs of its machine. */
/** How soon the ring is looked at again while input waits for room (ms). */
const INPUT_RETRY_MS = 20;

export interface ConsoleHost {
  readonly context: XenContext;
  /** The emulator's pages (special pages first, xen/memory/layout.ts). */
  readonly xenPages: Uint8Array;
  /** Whether backends may touch their rings now (the guest runs). */
  readonly backendsActive: boolean;
  /** Prints guest output (the same sink as console_io). */
  print(bytes: Uint8Array): void;
  log(message: string): void;
}

export class ConsoleBackend implements PvBackend {
  readonly service = new ConsoleService();
  private ring: ConsoleRing | null = null;
  private readonly outputWaiters = new Set<() => void>();
  private readonly roomWaiters = new Set<() => void>();
  private retry: NodeJS.Timeout | null = null;

  constructor(private readonly host: ConsoleHost) {}

  /** Whether the guest has a console ring this backend serves. */
  get attached(): boolean {
    return this.ring !== null;
  }

  /**
   * Looks up the guest's console ring (HVM_PARAM_CONSOLE_PFN and its backend
   * port); true when there is one to serve.
   */
  attach(): boolean {
    const pfn = this.host.context.shared.domain.hvmParams[HvmParam.CONSOLE_PFN] ?? 0n;
    if (pfn === 0n) return false;
    const page = BigInt(SPECIAL_PFN_BASE + SpecialPage.CONSOLE);
    if (pfn !== page) {
      this.host.log(`HVM_PARAM_CONSOLE_PFN is 0x${pfn.toString(16)}, not the console page: no PV console`);
      return false;
    }
    if (backendPort(this.host.context, BackendId.console) === 0) return false;
    const at = SpecialPage.CONSOLE * 4096;
    this.ring = new ConsoleRing(this.host.xenPages.subarray(at, at + 4096));
    return true;
  }

  kick(): void {
    if (!this.ring || !this.host.backendsActive) return;
    const r = this.service.pass(this.ring);
    for (const f of r.faults) this.host.log(describeFault(f));
    if (r.output.length > 0) {
      this.host.print(r.output);
      this.wake(this.outputWaiters);
    }
    if (r.moved) notifyGuest(this.host.context, BackendId.console);
    if (r.delivered > 0) this.wake(this.roomWaiters);
    if (this.service.pendingInput.length > 0) this.retryLater();
  }

  /**
   * Looks at the ring again soon while input waits: a guest need not notify
   * after reading input (GRUB polls its ring and never does), and would
   * otherwise get the rest only when it next prints.
   */
  private retryLater(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.kick();
    }, INPUT_RETRY_MS);
    this.retry.unref();
  }

  /** Console output that did not come through the ring (console_io, the debug port), already printed. */
  recordOther(bytes: Uint8Array): void {
    this.service.record(bytes);
    this.wake(this.outputWaiters);
  }

  /**
   * Queues input for the guest and delivers what its ring has room for now.
   * Returns how many bytes were taken: the rest did not fit the bounded
   * queue (the caller waits for whenInputRoom or drops them).  Without a
   * ring nothing is taken.
   */
  input(bytes: Uint8Array): number {
    if (!this.ring) return 0;
    const n = this.service.queueInput(bytes);
    this.kick();
    return n;
  }

  /** Resolves once the input queue has room again (or after `ms`). */
  whenInputRoom(ms: number): Promise<void> {
    if (this.service.pendingInput.length < PENDING_INPUT_MAX) return Promise.resolve();
    return this.waitOn(this.roomWaiters, ms);
  }

  /** The console log after `cursor` (see xen/console/log.ts). */
  read(cursor: number): LogRead {
    return this.service.log.since(cursor);
  }

  /** Resolves on the next output (or after `ms`, or when `signal` aborts). */
  whenOutput(ms: number, signal?: AbortSignal): Promise<void> {
    return this.waitOn(this.outputWaiters, ms, signal);
  }

  private waitOn(set: Set<() => void>, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private wake(set: Set<() => void>): void {
    for (const w of [...set]) w();
  }
}
