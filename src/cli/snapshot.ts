// `xenkvm snapshot --qmp SOCK -o FILE`: asks a running xenkvm to snapshot
// its guest (the process that owns the machine writes the file).
import { resolve } from 'node:path';
import { XenkvmError } from '../errors.js';
import type { JsonObject } from '../qmp/protocol.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

export interface SnapshotArgs {
  qmp: string;
  output: string;
  stop: boolean;
  compress: boolean;
  json: boolean;
}

export const command = defineCommand({
  command: 'snapshot',
  describe: 'Save a running guest to a file (through its control socket)',
  builder: (y) =>
    y
      .option('qmp', {
        type: 'string',
        demandOption: true,
        describe: 'control socket of the running xenkvm (run --qmp PATH)',
      })
      .option('output', {
        alias: 'o',
        type: 'string',
        demandOption: true,
        describe: 'snapshot file to write (atomically: temp file, fsync, rename)',
      })
      .option('stop', { type: 'boolean', default: false, describe: 'leave the guest paused after saving' })
      .option('compress', {
        type: 'boolean',
        default: false,
        describe: 'deflate guest memory (smaller, slower; pages no longer mappable)',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print the summary as JSON' })
      .example('$0 snapshot --qmp /tmp/vm.sock -o vm.xks', 'snapshot the guest and let it run on'),
  run: (a) => snapshotCommand({ qmp: a.qmp, output: a.output, stop: a.stop, compress: a.compress, json: a.json }),
});

export async function snapshotCommand(a: SnapshotArgs): Promise<number> {
  // Loaded when the command runs (command.ts).
  const [{ QmpClient }, { SNAPSHOT_PROGRESS }, { ProgressBar }] = await Promise.all([
    import('../qmp/client.js'),
    import('../migrate/snapshot/qmp-commands.js'),
    import('./progress.js'),
  ]);
  const path = resolve(a.output);
  let r: JsonObject;
  const bar = new ProgressBar('saving');
  try {
    const client = await QmpClient.connect(a.qmp, {
      commandTimeoutMs: 600_000,
      onEvent: (ev) => {
        if (ev.event !== SNAPSHOT_PROGRESS) return;
        const d = ev.data as { done?: number; total?: number } | undefined;
        bar.update(Number(d?.done ?? 0), Number(d?.total ?? 0));
      },
    });
    try {
      r = (await client.execute('snapshot', { path, stop: a.stop, compress: a.compress })) as JsonObject;
    } finally {
      bar.done();
      client.close();
    }
  } catch (e) {
    if (e instanceof XenkvmError && e.code === 'E_QMP') {
      process.stderr.write(`xenkvm: snapshot failed: ${e.message}\n`);
      return EXIT.crash;
    }
    throw e;
  }
  if (a.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    const mib = (n: number) => (n / (1 << 20)).toFixed(1);
    process.stdout.write(
      `saved ${r['path']}: ${mib(Number(r['bytes']))} MiB in ${(Number(r['seconds']) * 1000).toFixed(0)} ms, guest paused ${(Number(r['pausedSeconds']) * 1000).toFixed(0)} ms ` +
        `(${Number(r['mibPerSecond']).toFixed(0)} MiB/s of guest RAM; ${r['dataPages']} pages stored, ${r['zeroPages']} zero)` +
        `${a.stop ? '; guest left paused' : ''}\n`,
    );
  }
  return EXIT.ok;
}
