// Emulator threads started before their machine exists.  Loading a Worker
// (its isolate, koffi, the emulator modules) costs tens of milliseconds of
// CPU each (docs/benchmarks.md): a migration destination paid that for
// every thread while round 0 arrived, on a 2-core host where the sender
// needs the other core.  `receive` starts them while it waits for a
// connection, `restore` before it opens its file; a thread started this way
// loads everything and then waits (thread-input.ts) for its machine's
// resources.
import { Worker } from 'node:worker_threads';

export const VCPU_WORKER_URL = new URL('./vcpu-worker.js', import.meta.url);
export const TIMER_WORKER_URL = new URL('./timer-worker.js', import.meta.url);

/** Message that hands a pre-started thread its resources. */
export interface ThreadInit<T> {
  readonly init: T;
}

/** Message from a pre-started thread: its modules are loaded, it waits for ThreadInit. */
export interface ThreadLoaded {
  readonly loaded: true;
}

class Pool {
  private readonly spare = new Map<URL, Worker[]>();
  /** Settles once a spare has loaded its modules (or failed, or exited). */
  private readonly loaded = new WeakMap<Worker, Promise<void>>();

  /** Starts `count` threads of `url`, unless that many wait already. */
  prestart(url: URL, count: number): void {
    const list = this.spare.get(url) ?? [];
    this.spare.set(url, list);
    while (list.length < count) {
      const w = new Worker(url);
      // Spares must not keep the process alive, and a spare that fails is simply not used.
      w.unref();
      const drop = (): void => {
        const i = list.indexOf(w);
        if (i >= 0) list.splice(i, 1);
      };
      w.once('error', drop);
      w.once('exit', drop);
      this.loaded.set(
        w,
        new Promise<void>((resolve) => {
          const done = (): void => {
            w.off('message', onMessage);
            resolve();
          };
          const onMessage = (m: unknown): void => {
            if ((m as ThreadLoaded | null)?.loaded === true) done();
          };
          w.on('message', onMessage);
          w.once('error', done);
          w.once('exit', done);
        }),
      );
      list.push(w);
    }
  }

  /** A thread of `url` running with `data`: a spare if one waits, else a new one. */
  take<T>(url: URL, data: T): Worker {
    const w = this.spare.get(url)?.shift();
    if (!w) return new Worker(url, { workerData: data });
    w.removeAllListeners('error');
    w.removeAllListeners('exit');
    w.ref();
    w.postMessage({ init: data } satisfies ThreadInit<T>);
    return w;
  }

  /**
   * Ends every spare (a machine was created with fewer vCPUs than guessed, or
   * none at all), each once it has loaded: a thread ended while koffi loads
   * aborts the whole process (napi_throw during termination).  A command
   * that fails must call this before it exits, for the same reason.
   */
  async discard(): Promise<void> {
    const all = [...this.spare.values()].flat();
    this.spare.clear();
    await Promise.all(
      all.map(async (w) => {
        w.ref(); // the process must not end meanwhile: that ends the thread too
        await this.loaded.get(w);
        await w.terminate();
      }),
    );
  }
}

/** One pool per process: machines are created one at a time. */
export const threadPool = new Pool();

/** Pre-starts the timer thread and `vcpus` vCPU threads of a machine to come. */
export function prestartThreads(vcpus: number): void {
  threadPool.prestart(TIMER_WORKER_URL, 1);
  threadPool.prestart(VCPU_WORKER_URL, vcpus);
}
