// `xenkvm restore FILE`: a fresh process resumes a checkpointed guest.
//
// Reaching "guest running" fast is the point (issue 5), so this module
// loads almost nothing itself: the emulator threads start loading first
// (100-150 ms of CPU each, on the other core), then the restore code, and
// what only matters once the guest runs (run loop, control socket,
// migration commands) loads while the file is read.
import type { RestoreOptions } from '../migrate/checkpoint.js';
import { prestartThreads } from '../xen/thread-pool.js';

export type RestorePhase = NonNullable<Parameters<NonNullable<RestoreOptions['onPhase']>>[0]> | 'imported' | 'started' | 'running';

export interface RestoreArgs {
  file: string;
  qmp?: string | undefined;
  quiet: boolean;
  /** Called as each step begins, and once a vCPU runs guest code (tools/bench/restore-phases.ts). */
  onPhase?: (phase: RestorePhase) => void;
}

export async function restoreCommand(a: RestoreArgs): Promise<number> {
  // Every machine has a timer thread and a vCPU 0; restoreCheckpoint starts
  // any further vCPU threads once it has read the header.
  if (process.env.XK_EARLY !== '0') prestartThreads(1);
  const [{ restoreCheckpoint }, { ProgressBar }] = await Promise.all([import('../migrate/checkpoint.js'), import('./progress.js')]);
  const later = import('./run.js');
  later.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  a.onPhase?.('imported');
  const bar = new ProgressBar('restoring');
  const machine = await restoreCheckpoint(a.file, {
    console: (bytes) => process.stdout.write(bytes),
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
    onProgress: (done, total) => bar.update(done, total),
    ...(a.onPhase ? { onPhase: a.onPhase } : {}),
  }).finally(() => bar.done());
  let runToCompletion;
  try {
    ({ runToCompletion } = await later);
  } catch (e) {
    await machine.destroy();
    throw e;
  }
  const onPhase = a.onPhase;
  return runToCompletion(machine, a.quiet, a.qmp, onPhase ? () => {
    onPhase('started');
    void machine.whenRunning().then(() => onPhase('running'), () => undefined);
  } : undefined);
}
