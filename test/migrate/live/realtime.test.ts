// The migration pause runs each side's main thread SCHED_FIFO (realtime.ts);
// a window must end back at SCHED_OTHER, and nothing it starts may keep the
// real-time policy.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  SCHED_FIFO,
  SCHED_OTHER,
  SCHED_RESET_ON_FORK,
  setThreadScheduler,
  threadScheduler,
} from '../../../src/kvm/libc.js';
import { realtimeWindow } from '../../../src/migrate/live/pause/realtime.js';
import { distUrl } from '../../helpers/paths.js';

function whyNot(): string | null {
  if (process.env['XENKVM_MIGRATE_REALTIME'] === '0') return 'XENKVM_MIGRATE_REALTIME=0';
  if (!setThreadScheduler(SCHED_FIFO, 1)) return 'no permission to use SCHED_FIFO here (CAP_SYS_NICE)';
  setThreadScheduler(SCHED_OTHER, 0);
  return null;
}

const LIBC = distUrl('src/kvm/libc.js');

/** The scheduling policy of a new worker thread's own OS thread. */
async function workerPolicy(): Promise<number> {
  const w = new Worker(
    `Promise.all([import('${LIBC}'), import('node:worker_threads')]).then(([m, wt]) => wt.parentPort.postMessage(m.threadScheduler()));`,
    { eval: true },
  );
  const [policy] = (await once(w, 'message')) as [number];
  await w.terminate();
  return policy;
}

/** A worker that stays up, and its OS thread id. */
async function idleWorker(): Promise<{ tid: number; stop: () => Promise<number> }> {
  const w = new Worker(
    `Promise.all([import('${LIBC}'), import('node:worker_threads')]).then(([m, wt]) => { wt.parentPort.postMessage(m.gettid()); setInterval(() => {}, 1000); });`,
    { eval: true },
  );
  const [tid] = (await once(w, 'message')) as [number];
  return { tid, stop: () => w.terminate() };
}

const skip = whyNot();
if (skip) {
  console.log(`  skip realtime: ${skip}`);
} else {
  test('a window is real-time while open and ordinary again after', () => {
    assert.is(threadScheduler(), SCHED_OTHER);
    const leave = realtimeWindow();
    assert.is(threadScheduler(), SCHED_FIFO | SCHED_RESET_ON_FORK);
    leave();
    assert.is(threadScheduler(), SCHED_OTHER);
    leave();
    assert.is(threadScheduler(), SCHED_OTHER, 'leaving twice changes nothing');
  });

  test('a window inside a window leaves the outer one as it is', () => {
    const outer = realtimeWindow();
    const inner = realtimeWindow();
    inner();
    assert.is(threadScheduler(), SCHED_FIFO | SCHED_RESET_ON_FORK);
    outer();
    assert.is(threadScheduler(), SCHED_OTHER);
  });

  test('helper threads are real-time below the main thread for the window, ordinary after', async () => {
    const w = await idleWorker();
    try {
      assert.is(threadScheduler(w.tid), SCHED_OTHER);
      const leave = realtimeWindow([w.tid, 0]);
      assert.is(threadScheduler(w.tid), SCHED_FIFO | SCHED_RESET_ON_FORK);
      leave();
      assert.is(threadScheduler(w.tid), SCHED_OTHER);
      assert.is(threadScheduler(), SCHED_OTHER);
    } finally {
      await w.stop();
    }
  });

  test('a thread started inside a window does not inherit the real-time policy', async () => {
    const leave = realtimeWindow();
    try {
      assert.is(await workerPolicy(), SCHED_OTHER);
    } finally {
      leave();
    }
  });
}

test.run();
