// Restoring a snapshot file (save.ts writes one) into a fresh machine
// in this process, checking first that the file is intact and that this host
// can run it.
//
// Built for time to "guest running" from process start (issue 5): this
// module's own imports are the file reader, the RAM loader and the guest
// RAM mapping only.  Guest memory is mapped and filled from the file while
// the emulator and KVM modules (~100 ms of module loading here) load, and
// the vCPU and timer threads load on the other core from the header on; the
// KVM VM is created around the filled memory, the saved state is checked
// against this host and written, and only then may the guest start.  A file
// that fails any check never starts a guest: every RAM checksum is verified
// before the machine is created, and everything made so far is undone.
//
// Where it can (native helper, userfaultfd, raw page-aligned RAM records:
// every uncompressed snapshot), the guest starts before its memory is in:
// a native thread copies pages in from the file as they are touched and the
// rest behind them once the guest runs, while ram/load-lazy.ts checks every
// record's checksum before it may.  Otherwise RamLoader reads all of it
// first.
import { closeSync, openSync } from 'node:fs';
import { FormatError } from '../../errors.js';
import { GuestRam } from '../../kvm/guest-ram.js';
import { prestartThreads } from '../../machine/thread-pool.js';
import type { XenMachine } from '../../machine/machine.js';
import type { SectionCollector } from '../sections-in.js';
import type { RamPagesRecord, RamZeroRecord, Section } from '../stream/records.js';
import { PAGE_SIZE } from '../stream/format.js';
import { checkMachineConfig } from '../../machine/config.js';
import { RamLoader } from '../ram/load-eager.js';
import { type LazyRam, lazyRestoreAvailable, lazyRuns, startLazyRam } from '../ram/load-lazy.js';
import { openSnapshot, type SnapshotFile } from '../stream/file.js';

export type RestorePhase = 'header' | 'ram' | 'lazy' | 'loaded' | 'machine' | 'state' | 'done' | 'filled';

export interface RestoreOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Bytes of the file read so far, and its size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * Called as each step begins: header read, first RAM record, RAM loaded
   * and checked, machine creation, state, done (tools/bench/restore-phases.ts);
   * with lazy memory, 'lazy' once filling is set up and the checksums are
   * being checked, and 'filled' once every page is in (the guest runs by then).
   */
  onPhase?: (phase: RestorePhase) => void;
  /** Uncompressed RAM records read at once (RamLoader). */
  inFlight?: number;
  /**
   * 'lazy' (default where possible): start the guest before its memory is
   * in; the file must then stay as it is until it is ('filled').  'eager':
   * read it all first.
   */
  memory?: 'lazy' | 'eager';
}

/** The emulator side of a restore, loaded while guest memory is read. */
const loadEmulator = () =>
  Promise.all([import('../../machine/machine.js'), import('../sections-in.js'), import('../../machine/state.js')]);

/** What a restore has made so far: undone if it fails (undoRestore), closed either way. */
interface Restoring {
  ram: GuestRam | null;
  machine: XenMachine | null;
  loader: RamLoader | null;
  lazy: LazyRam | null;
  fd: number;
}

type RamRecordAt = (RamPagesRecord | RamZeroRecord) & { offset: number };

/** Creates a machine from a snapshot file, ready to start; nothing is left behind if the file or host is unfit. */
export async function restoreSnapshot(path: string, opts: RestoreOptions): Promise<XenMachine> {
  const file = await openSnapshot(path, {
    onWarning: (w) => opts.log(`${path}: ${w.message}`),
    skipRamData: true,
    syncReads: true,
  });
  const emulator = loadEmulator();
  emulator.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  const job: Restoring = { ram: null, machine: null, loader: null, lazy: null, fd: -1 };
  try {
    opts.onPhase?.('header');
    const config = checkMachineConfig(file.header.machine, path);
    // The vCPU and timer threads load (50-90 ms of CPU each) while the file is read.
    prestartThreads(config.vcpus);
    job.fd = openSync(path, 'r');
    // Decoded once the emulator is loaded; which came before the first RAM record matters.
    const sections: Section[] = [];
    let sectionsBeforeRam = -1;
    // Page lists only: the data is read (or mapped) once the whole file is known good.
    const records: RamRecordAt[] = [];
    for await (const rec of file) {
      if (rec.kind === 'section') {
        sections.push(rec.section);
      } else if (rec.kind === 'ram' || rec.kind === 'zero') {
        if (records.length === 0) {
          opts.onPhase?.('ram');
          sectionsBeforeRam = sections.length;
        }
        records.push(rec);
      }
    }
    if (records.length > 0) await fillRam(job, file, records, config.memBytes, path, opts);
    // Every checksum is checked before the machine exists, let alone runs.
    await job.loader?.drain();
    opts.onPhase?.('loaded');
    const [{ XenMachine }, { assertHostCanRun, SectionCollector }, { checkMachineState, restoreMachineState }] =
      await emulator;
    const early = sectionsBeforeRam < 0 ? sections.length : sectionsBeforeRam;
    const { collector, cpu0 } = collectSections(new SectionCollector(path), sections, early, path);
    checkMachineState(collector.states, config, path);
    opts.onPhase?.('machine');
    job.ram ??= new GuestRam(config.memBytes, { hugePages: false });
    const m = XenMachine.create({
      memBytes: config.memBytes,
      vcpus: config.vcpus,
      console: opts.console,
      log: opts.log,
      incoming: true,
      ram: job.ram,
    });
    job.machine = m;
    assertHostCanRun(m, cpu0, path);
    opts.onProgress?.(file.size, file.size);
    opts.onPhase?.('state');
    restoreMachineState(m, collector.states);
    await job.lazy?.checked;
    const lazy = job.lazy;
    if (lazy) {
      // The rest of memory comes in behind the guest's own faults once it runs, not competing with the start.
      void m.whenRunning().then(
        () => lazy.prefetch(),
        () => undefined,
      );
    }
    opts.onPhase?.('done');
    return m;
  } catch (e) {
    throw await undoRestore(job, e);
  } finally {
    await job.loader?.settle();
    if (job.fd >= 0) closeSync(job.fd);
    await file.close();
  }
}

/**
 * Maps guest memory and fills it from the file's RAM records: lazily where
 * it can (the checksums are checked, lazy.checked, while the machine is
 * built, before it may run), else all of it now.
 */
async function fillRam(
  job: Restoring,
  file: SnapshotFile,
  records: readonly RamRecordAt[],
  memBytes: number,
  path: string,
  opts: RestoreOptions,
): Promise<void> {
  const ram = new GuestRam(memBytes, { hugePages: false });
  job.ram = ram;
  const runs =
    (opts.memory ?? 'lazy') === 'lazy' && lazyRestoreAvailable() ? lazyRuns(records, memBytes / PAGE_SIZE, path) : null;
  if (runs) {
    const l = startLazyRam(job.fd, file.size, runs, records, ram, path);
    job.lazy = l;
    opts.onPhase?.('lazy');
    void l.done.then(
      () => opts.onPhase?.('filled'),
      () => undefined,
    );
  } else {
    const loader = new RamLoader(job.fd, ram, path, opts.inFlight === undefined ? {} : { inFlight: opts.inFlight });
    job.loader = loader;
    for (const rec of records) {
      await loader.apply(rec);
      opts.onProgress?.(rec.offset, file.size);
    }
  }
}

/** Decodes `sections`; the first `early` of them (before any RAM) must include vCPU 0's. */
function collectSections(collector: SectionCollector, sections: readonly Section[], early: number, path: string) {
  for (let i = 0; i < early; i++) collector.add(sections[i]!);
  const cpu0 = collector.cpu0;
  if (!cpu0) throw new FormatError(`${path}: no cpu section before guest memory`);
  for (let i = early; i < sections.length; i++) collector.add(sections[i]!);
  return { collector, cpu0 };
}

/** Undoes a failed restore; returns the error to throw. */
async function undoRestore(job: Restoring, e: unknown): Promise<unknown> {
  // Reads in flight write into guest RAM: they end before it is unmapped.
  await job.loader?.settle();
  // The check reads the mapped file, unmapped once the machine is gone; and a corrupt file is
  // named as such, not by whatever its unchecked pages made the state restore trip over.
  const checkFailure = await job.lazy?.checked.then(
    () => null,
    (err: unknown) => err,
  );
  if (job.machine) await job.machine.destroy();
  else job.ram?.destroy();
  return checkFailure instanceof FormatError ? checkFailure : e;
}
