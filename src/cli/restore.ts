// `xenkvm restore FILE`: a fresh process resumes a checkpointed guest.
import { restoreCheckpoint } from '../migrate/checkpoint.js';
import { runToCompletion } from './run.js';
import { ProgressBar } from './progress.js';

export interface RestoreArgs {
  file: string;
  qmp?: string | undefined;
  quiet: boolean;
}

export async function restoreCommand(a: RestoreArgs): Promise<number> {
  const bar = new ProgressBar('restoring');
  const machine = await restoreCheckpoint(a.file, {
    console: (bytes) => process.stdout.write(bytes),
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
    onProgress: (done, total) => bar.update(done, total),
  }).finally(() => bar.done());
  return runToCompletion(machine, a.quiet, a.qmp);
}
