// `xenkvm snapshot --qmp SOCK -o FILE`: asks a running xenkvm to checkpoint
// its guest (the process that owns the machine writes the file).
import { resolve } from 'node:path';
import { XenkvmError } from '../errors.js';
import { executeOnce } from '../qmp/client.js';
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
  try {
    r = (await executeOnce(a.qmp, 'snapshot', { path, stop: a.stop, compress: a.compress }, { commandTimeoutMs: 600_000 })) as JsonObject;
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
      `saved ${r['path']}: ${mib(Number(r['bytes']))} MiB in ${(Number(r['seconds']) * 1000).toFixed(0)} ms ` +
        `(${Number(r['mibPerSecond']).toFixed(0)} MiB/s of guest RAM; ${r['dataPages']} pages stored, ${r['zeroPages']} zero)` +
        `${a.stop ? '; guest left paused' : ''}\n`,
    );
  }
  return EXIT.ok;
}
