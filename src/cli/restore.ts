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
import type { CliCommand } from './command.js';

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

/**
 * main.ts parses `restore FILE [--qmp SOCK] [--quiet] [--eager]` without
 * yargs (parseRestoreFast); this for the rest.  Typed by hand rather than
 * through defineCommand: a value import would load one module more here.
 */
export const command: CliCommand<Pick<RestoreArgs, 'file' | 'qmp' | 'quiet' | 'eager'>> = {
  command: 'restore <file>',
  describe: 'Resume a saved guest in this process; its console continues on stdout',
  builder: (y) =>
    y
      .positional('file', {
        type: 'string',
        demandOption: true,
        describe: 'snapshot file (xenkvm snapshot -o FILE)',
      })
      .option('qmp', { type: 'string', describe: 'open a QMP control socket at this path' })
      .option('quiet', {
        type: 'boolean',
        default: false,
        describe: 'no closing status line on a clean shutdown',
      })
      .option('eager', {
        type: 'boolean',
        default: false,
        describe:
          'load all of guest memory before the guest starts (by default the guest starts first and memory follows within a second; the file must not change until then)',
      })
      .example('$0 restore vm.xks --qmp /tmp/vm2.sock', 'bring the guest back, controllable through a socket')
      .epilogue(
        'Exit status as for run; 2 when the file is bad or this host cannot run the guest (nothing is started then).',
      ),
  run: (a) => restoreCommand({ file: a.file, qmp: a.qmp, quiet: a.quiet, eager: a.eager }),
};

export async function restoreCommand(a: RestoreArgs): Promise<number> {
  // Every machine has a timer thread and a vCPU 0; restoreSnapshot starts
  // any further vCPU threads once it has read the header.
  prestartThreads(1);
  let machine: XenMachine;
  let runToCompletion: typeof import('./run-to-completion.js').runToCompletion;
  try {
    const [{ restoreSnapshot }, { ProgressBar }] = await Promise.all([
      import('../migrate/snapshot/restore.js'),
      import('./progress.js'),
    ]);
    const later = import('./run-to-completion.js');
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
