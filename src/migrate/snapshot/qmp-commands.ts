// The QMP command that snapshots a running machine:
//   snapshot {path, stop?, compress?}
//     saves the guest to `path` (paused meanwhile, resumed unless stop) and
//     answers with the summary.  SNAPSHOT_PROGRESS {done, total} (bytes of
//     guest RAM) follows the save at most every 100 ms.
import type { JsonObject } from '../../qmp/protocol.js';
import type { CommandRegistry } from '../../qmp/registry.js';
import { arg } from '../../qmp/schema.js';
import type { EventSink } from '../../qmp/server.js';
import type { RunState } from '../../machine/qmp-commands.js';
import type { SaveOptions, SnapshotSummary } from './save.js';

/** QMP event with {done, total} bytes of guest RAM saved. */
export const SNAPSHOT_PROGRESS = 'SNAPSHOT_PROGRESS';

/** What the command needs of a machine. */
export interface SnapshotTarget {
  status(): RunState;
  /** Stops every vCPU (and announces it: STOP); resolves once none runs guest code. */
  pause(): Promise<void>;
  /** Lets the vCPUs run again (and announces it: RESUME). */
  resume(): void;
  /** Saves the paused machine to `path` (save.ts's saveSnapshot). */
  save(path: string, opts: SaveOptions): Promise<SnapshotSummary>;
  /** Where SNAPSHOT_PROGRESS goes; null: nowhere (yet). */
  events(): EventSink | null;
}

export function registerSnapshotCommands(registry: CommandRegistry, target: SnapshotTarget): void {
  registry.register({
    name: 'snapshot',
    description: 'save the guest to a file (paused meanwhile); resumes it unless stop is true',
    args: {
      path: arg.string({ maxLength: 4096 }),
      stop: arg.optional(arg.boolean()),
      compress: arg.optional(arg.boolean()),
    },
    handler: async (a) => {
      const wasRunning = target.status() === 'running';
      if (wasRunning) await target.pause();
      let resumed = false;
      const resumeIfRunning = () => {
        if (resumed || !wasRunning || a.stop) return;
        resumed = true;
        target.resume();
      };
      try {
        let last = 0;
        const summary = await target.save(a.path, {
          compress: a.compress ?? false,
          // Clients draw a progress bar from these (xenkvm snapshot on a TTY).
          onProgress: (done, total) => {
            const now = performance.now();
            const sink = target.events();
            if (sink && (now - last >= 100 || done === total)) {
              last = now;
              sink.emitEvent(SNAPSHOT_PROGRESS, { done, total });
            }
          },
          // Everything is in the page cache: the guest runs during fsync and rename.
          onStateWritten: resumeIfRunning,
        });
        return { ...summary } as unknown as JsonObject;
      } finally {
        resumeIfRunning();
      }
    },
  });
}
