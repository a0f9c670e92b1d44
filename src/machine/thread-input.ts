// How an emulator thread gets its resources: as workerData when it was
// started for a machine, or in the first message when it was pre-started
// (thread-pool.ts) and has loaded its modules already.
import { parentPort, workerData } from 'node:worker_threads';
import type { ThreadInit, ThreadLoaded } from './thread-pool.js';

export function threadInput<T>(): Promise<T> {
  if (workerData !== null && workerData !== undefined) return Promise.resolve(workerData as T);
  // Every module is loaded by now: the pool may end this thread safely from
  // here on (ending it while koffi loads aborts the process).
  parentPort!.postMessage({ loaded: true } satisfies ThreadLoaded);
  return new Promise((resolve) => parentPort!.once('message', (m: ThreadInit<T>) => resolve(m.init)));
}
