// `xenkvm snapshot --qmp SOCK -o FILE`: asks a running xenkvm to snapshot
// its guest (the process that owns the machine writes the file).
import { resolve } from 'node:path';
import { XenkvmError } from '../errors.js';
import { QmpClient } from '../qmp/client.js';
import { ProgressBar } from './progress.js';
import { SNAPSHOT_PROGRESS } from '../migrate/snapshot/qmp-commands.js';
import type { JsonObject } from '../qmp/protocol.js';
import { EXIT } from './exit-codes.js';

export interface SnapshotArgs {
  qmp: string;
  output: string;
  stop: boolean;
  compress: boolean;
  json: boolean;
}

export async function snapshotCommand(a: SnapshotArgs): Promise<number> {
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
