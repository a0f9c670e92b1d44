// A checkpoint is a migration into a file: the HEADER names the machine and
// embeds every section's schema, then one SECTION per component instance
// (src/xen/machine-state.ts), then guest RAM with zero pages left out, then
// END.  Restore reads it back into a fresh machine in this process, checking
// first that this host can run it.
import { closeSync, openSync } from 'node:fs';
import { FormatError } from '../errors.js';
import { restoreMachineState, saveMachineState } from '../xen/machine-state.js';
import { XenMachine } from '../xen/machine.js';
import { assertHostCanRun, checkMachineConfig, SectionCollector } from './incoming.js';
import { machineHeader, writeMachineSections } from './machine-stream.js';
import { openSnapshot, PAGE_SIZE, writeRam, writeSnapshotFile } from './index.js';
import { RamLoader } from './ram-load.js';
import { prestartThreads } from '../xen/thread-pool.js';

export interface CheckpointSummary {
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
export async function saveCheckpoint(m: XenMachine, path: string, opts: SaveOptions = {}): Promise<CheckpointSummary> {
  const t0 = performance.now();
  const sections = saveMachineState(m);
  const header = machineHeader(m);
  let ram = { dataPages: 0, zeroPages: 0 };
  let written = 0;
  const compressed = opts.compress ?? false;
  const result = await writeSnapshotFile(path, header, async (w) => {
    await writeMachineSections(w, sections);
    const progress = opts.onProgress;
    const stats = await writeRam(w, m.ram.bytes, { compress: compressed, ...(progress ? { onProgress: (n: number, total: number) => progress(n * PAGE_SIZE, total * PAGE_SIZE) } : {}) });
    ram = { dataPages: stats.dataPages, zeroPages: m.ram.size / PAGE_SIZE - stats.dataPages };
  }, { alignPages: !compressed, onWritten: () => { written = performance.now(); opts.onStateWritten?.(); } });
  const seconds = (performance.now() - t0) / 1000;
  return {
    path, bytes: result.bytes, sections: sections.length, guestPages: m.ram.size / PAGE_SIZE, ...ram, compressed,
    seconds, pausedSeconds: ((written || performance.now()) - t0) / 1000, mibPerSecond: m.ram.size / (1 << 20) / seconds,
  };
}

export interface RestoreOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Bytes of the file read so far, and its size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Called as each step of the restore begins (header, machine, ram, state, done): for the restore-phases bench. */
  onPhase?: (phase: 'header' | 'machine' | 'ram' | 'state' | 'done') => void;
  /** Uncompressed RAM records read at once (RamLoader). */
  inFlight?: number;
}

/** Creates a machine from a checkpoint file, ready to start; nothing is created if the file or host is unfit. */
export async function restoreCheckpoint(path: string, opts: RestoreOptions): Promise<XenMachine> {
  const file = await openSnapshot(path, { onWarning: (w) => opts.log(`${path}: ${w.message}`), skipRamData: true, syncReads: true });
  let machine: XenMachine | null = null;
  let loader: RamLoader | null = null;
  let fd = -1;
  try {
    opts.onPhase?.('header');
    const config = checkMachineConfig(file.header.machine, path);
    // The vCPU and timer threads load (100-150 ms of CPU each) while the file is read.
    prestartThreads(config.vcpus);
    fd = openSync(path, 'r');
    const sections = new SectionCollector(path);
    const ensureMachine = (): XenMachine => {
      if (machine) return machine;
      const cpu0 = sections.cpu0;
      if (!cpu0) throw new FormatError(`${path}: no cpu section before guest memory`);
      opts.onPhase?.('machine');
      const m = XenMachine.create({ memBytes: config.memBytes, vcpus: config.vcpus, console: opts.console, log: opts.log, incoming: true });
      machine = m;
      assertHostCanRun(m, cpu0, path);
      opts.onPhase?.('ram');
      return m;
    };
    for await (const rec of file) {
      if (rec.kind === 'section') {
        sections.add(rec.section);
      } else if (rec.kind === 'ram' || rec.kind === 'zero') {
        loader ??= new RamLoader(fd, ensureMachine().ram, path, opts.inFlight === undefined ? {} : { inFlight: opts.inFlight });
        await loader.apply(rec);
        opts.onProgress?.(rec.offset, file.size);
      }
    }
    // Every checksum is checked before any state is written or a guest may start.
    await loader?.drain();
    const m = ensureMachine();
    opts.onProgress?.(file.size, file.size);
    opts.onPhase?.('state');
    restoreMachineState(m, sections.states);
    opts.onPhase?.('done');
    return m;
  } catch (e) {
    // Reads in flight write into guest RAM: they end before it is unmapped.
    await (loader as RamLoader | null)?.settle();
    await (machine as XenMachine | null)?.destroy();
    throw e;
  } finally {
    await (loader as RamLoader | null)?.settle();
    if (fd >= 0) closeSync(fd);
    await file.close();
  }
}
