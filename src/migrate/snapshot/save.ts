// A snapshot is a migration into a file: the HEADER names the machine and
// embeds every section's schema, then one SECTION per component instance
// (src/machine/sections.ts), then guest RAM with zero pages left out, then
// END.  Restore (snapshot/restore.ts) reads it back into a fresh machine in
// this process, checking first that this host can run it.
import { saveMachineState } from '../../machine/state.js';
import type { XenMachine } from '../../machine/machine.js';
import { machineHeader, writeMachineSections } from '../sections-out.js';
import { PAGE_SIZE, writeSnapshotFile } from '../index.js';
import { writeRamChunks } from '../ram/chunked.js';

export interface SnapshotSummary {
  path: string;
  bytes: number;
  sections: number;
  guestPages: number;
  dataPages: number;
  zeroPages: number;
  compressed: boolean;
  seconds: number;
  /** Until the state was in the page cache; the rest is fsync and rename (the guest may run meanwhile). */
  pausedSeconds: number;
  /** Guest RAM saved per second (MiB/s), zero pages included. */
  mibPerSecond: number;
}

export interface SaveOptions {
  compress?: boolean;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** The guest's state is all in the file's page cache: it may run again while the file is synced and renamed. */
  onStateWritten?: () => void;
}

/**
 * Saves a paused machine to `path` atomically (temp file, fsync, rename).
 * The summary's `pausedSeconds` is the time until onStateWritten.
 */
export async function saveSnapshot(m: XenMachine, path: string, opts: SaveOptions = {}): Promise<SnapshotSummary> {
  const t0 = performance.now();
  const sections = saveMachineState(m);
  const header = machineHeader(m);
  let ram = { dataPages: 0, zeroPages: 0 };
  let written = 0;
  const compressed = opts.compress ?? false;
  const result = await writeSnapshotFile(
    path,
    header,
    async (w) => {
      await writeMachineSections(w, sections);
      const progress = opts.onProgress;
      const stats = await writeRamChunks(w, m.ram.chunks, {
        compress: compressed,
        ...(progress ? { onProgress: (n: number, total: number) => progress(n * PAGE_SIZE, total * PAGE_SIZE) } : {}),
      });
      ram = { dataPages: stats.dataPages, zeroPages: m.ram.size / PAGE_SIZE - stats.dataPages };
    },
    {
      alignPages: !compressed,
      onWritten: () => {
        written = performance.now();
        opts.onStateWritten?.();
      },
    },
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    path,
    bytes: result.bytes,
    sections: sections.length,
    guestPages: m.ram.size / PAGE_SIZE,
    ...ram,
    compressed,
    seconds,
    pausedSeconds: ((written || performance.now()) - t0) / 1000,
    mibPerSecond: m.ram.size / (1 << 20) / seconds,
  };
}

// Restoring lives in snapshot/restore.ts, whose imports are kept light so
// that `xenkvm restore` reads guest memory while the emulator loads.
export { restoreSnapshot, type RestoreOptions, type RestorePhase } from './restore.js';
