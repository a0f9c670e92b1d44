// `xenkvm restore FILE`: a fresh process resumes a checkpointed guest.
//
// Reaching "guest running" fast is the point (issue 5), so this module
// loads almost nothing itself: the emulator threads start loading first
// (100-150 ms of CPU each, on the other core), then the restore code, and
// what only matters once the guest runs (run loop, control socket,
// migration commands) loads while the file is read.
import { prestartThreads } from '../xen/thread-pool.js';

export interface RestoreArgs {
  file: string;
  qmp?: string | undefined;
  quiet: boolean;
}

export async function restoreCommand(a: RestoreArgs): Promise<number> {
  // Every machine has a timer thread and a vCPU 0; restoreCheckpoint starts
  // any further vCPU threads once it has read the header.
  prestartThreads(1);
  const [{ restoreCheckpoint }, { ProgressBar }] = await Promise.all([import('../migrate/checkpoint.js'), import('./progress.js')]);
  const later = import('./run.js');
  later.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  const bar = new ProgressBar('restoring');
  const machine = await restoreCheckpoint(a.file, {
    console: (bytes) => process.stdout.write(bytes),
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
    onProgress: (done, total) => bar.update(done, total),
  }).finally(() => bar.done());
  let runToCompletion;
  try {
    ({ runToCompletion } = await later);
  } catch (e) {
    await machine.destroy();
    throw e;
  }
  return runToCompletion(machine, a.quiet, a.qmp);
}
