// `xenkvm restore FILE`: a fresh process resumes a snapshotted guest.
//
// Reaching "guest running" fast is the point (issue 5), so this module
// loads almost nothing itself: the emulator threads start loading first
// (on the other core; docs/benchmarks.md has the costs), then the file reader, and
// the emulator (snapshot/restore.ts) and what only matters once the guest
// runs (run loop, control socket, migration commands) load while guest
// memory is read.
import type { RestorePhase as LoadPhase } from '../migrate/snapshot/restore.js';
import type { XenMachine } from '../machine/machine.js';
import { prestartThreads, threadPool } from '../machine/thread-pool.js';

export type RestorePhase = LoadPhase | 'imported' | 'started' | 'running';

export interface RestoreArgs {
  file: string;
  qmp?: string | undefined;
  quiet: boolean;
  /** Read all of guest memory before the guest starts, instead of lazily behind it. */
  eager?: boolean | undefined;
  /** Called as each step begins, and once a vCPU runs guest code (tools/bench/restore-phases.ts). */
  onPhase?: (phase: RestorePhase) => void;
}

export async function restoreCommand(a: RestoreArgs): Promise<number> {
  // Every machine has a timer thread and a vCPU 0; restoreSnapshot starts
  // any further vCPU threads once it has read the header.
  prestartThreads(1);
  let machine: XenMachine;
  let runToCompletion: typeof import('./run.js').runToCompletion;
  try {
    const [{ restoreSnapshot }, { ProgressBar }] = await Promise.all([
      import('../migrate/snapshot/restore.js'),
      import('./progress.js'),
    ]);
    const later = import('./run.js');
    later.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    a.onPhase?.('imported');
    const bar = new ProgressBar('restoring');
    machine = await restoreSnapshot(a.file, {
      memory: a.eager ? 'eager' : 'lazy',
      console: (bytes) => process.stdout.write(bytes),
      log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
      onProgress: (done, total) => bar.update(done, total),
      ...(a.onPhase ? { onPhase: a.onPhase } : {}),
    }).finally(() => bar.done());
    try {
      ({ runToCompletion } = await later);
    } catch (e) {
      await machine.destroy();
      throw e;
    }
  } catch (e) {
    // A bad file fails within milliseconds, while the threads still load.
    await threadPool.discard();
    throw e;
  }
  const onPhase = a.onPhase;
  return runToCompletion(
    machine,
    a.quiet,
    a.qmp,
    onPhase
      ? () => {
          onPhase('started');
          void machine.whenRunning().then(
            () => onPhase('running'),
            () => undefined,
          );
        }
      : undefined,
  );
}
