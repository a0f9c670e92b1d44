// Restoring a snapshot file (save.ts writes one) into a fresh machine
// in this process, checking first that the file is intact and that this host
// can run it.
//
// Built for time to "guest running" from process start (issue 5): this
// module's own imports are the file reader, the RAM loader and the guest
// RAM mapping only.  Guest memory is mapped and filled from the file while
// the emulator and KVM modules load (docs/migration.md, "Restore"), and
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
import type { RamPagesRecord, RamZeroRecord, Section } from '../stream/records.js';
import { PAGE_SIZE } from '../stream/format.js';
import { checkMachineConfig } from '../../machine/config.js';
import { RamLoader } from '../ram/load-eager.js';
import { type LazyRam, lazyRestoreAvailable, lazyRuns, startLazyRam } from '../ram/load-lazy.js';
import { openSnapshot } from '../stream/file.js';

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

/** Creates a machine from a snapshot file, ready to start; nothing is left behind if the file or host is unfit. */
export async function restoreSnapshot(path: string, opts: RestoreOptions): Promise<XenMachine> {
  const file = await openSnapshot(path, {
    onWarning: (w) => opts.log(`${path}: ${w.message}`),
    skipRamData: true,
    syncReads: true,
  });
  const emulator = loadEmulator();
  emulator.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  let ram: GuestRam | null = null;
  let machine: XenMachine | null = null;
  let loader: RamLoader | null = null;
  let lazy: LazyRam | null = null;
  let fd = -1;
  try {
    opts.onPhase?.('header');
    const config = checkMachineConfig(file.header.machine, path);
    // The vCPU and timer threads load (tens of ms of CPU each) while the file is read.
    prestartThreads(config.vcpus);
    fd = openSync(path, 'r');
    // Decoded once the emulator is loaded; which came before the first RAM record matters.
    const sections: Section[] = [];
    let sectionsBeforeRam = -1;
    // Page lists only: the data is read (or mapped) once the whole file is known good.
    const records: Array<(RamPagesRecord | RamZeroRecord) & { offset: number }> = [];
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
    if (records.length > 0) {
      ram = new GuestRam(config.memBytes, { hugePages: false });
      const runs =
        (opts.memory ?? 'lazy') === 'lazy' && lazyRestoreAvailable()
          ? lazyRuns(records, config.memBytes / PAGE_SIZE, path)
          : null;
      if (runs) {
        // The checksums are checked (lazy.checked) while the machine is built, before it may run.
        const l = startLazyRam(fd, file.size, runs, records, ram, path);
        lazy = l;
        opts.onPhase?.('lazy');
        void l.done.then(
          () => opts.onPhase?.('filled'),
          () => undefined,
        );
      } else {
        loader = new RamLoader(fd, ram, path, opts.inFlight === undefined ? {} : { inFlight: opts.inFlight });
        for (const rec of records) {
          await loader.apply(rec);
          opts.onProgress?.(rec.offset, file.size);
        }
      }
    }
    // Every checksum is checked before the machine exists, let alone runs.
    await loader?.drain();
    opts.onPhase?.('loaded');
    const [{ XenMachine }, { assertHostCanRun, SectionCollector }, { checkMachineState, restoreMachineState }] =
      await emulator;
    const collector = new SectionCollector(path);
    const early = sectionsBeforeRam < 0 ? sections.length : sectionsBeforeRam;
    for (let i = 0; i < early; i++) collector.add(sections[i]!);
    const cpu0 = collector.cpu0;
    if (!cpu0) throw new FormatError(`${path}: no cpu section before guest memory`);
    for (let i = early; i < sections.length; i++) collector.add(sections[i]!);
    checkMachineState(collector.states, config, path);
    opts.onPhase?.('machine');
    ram ??= new GuestRam(config.memBytes, { hugePages: false });
    const m = XenMachine.create({
      memBytes: config.memBytes,
      vcpus: config.vcpus,
      console: opts.console,
      log: opts.log,
      incoming: true,
      ram,
    });
    machine = m;
    assertHostCanRun(m, cpu0, path);
    opts.onProgress?.(file.size, file.size);
    opts.onPhase?.('state');
    restoreMachineState(m, collector.states);
    await lazy?.checked;
    if (lazy) {
      const l = lazy;
      // The rest of memory comes in behind the guest's own faults once it runs, not competing with the start.
      void m.whenRunning().then(
        () => l.prefetch(),
        () => undefined,
      );
    }
    opts.onPhase?.('done');
    return m;
  } catch (e) {
    // Reads in flight write into guest RAM: they end before it is unmapped.
    await (loader as RamLoader | null)?.settle();
    // The check reads the mapped file, unmapped once the machine is gone; and a corrupt file is
    // named as such, not by whatever its unchecked pages made the state restore trip over.
    const checkFailure = await (lazy as LazyRam | null)?.checked.then(
      () => null,
      (err: unknown) => err,
    );
    if (machine) await (machine as XenMachine).destroy();
    else (ram as GuestRam | null)?.destroy();
    throw checkFailure instanceof FormatError ? checkFailure : e;
  } finally {
    await (loader as RamLoader | null)?.settle();
    if (fd >= 0) closeSync(fd);
    await file.close();
  }
}
