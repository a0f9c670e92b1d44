// Restoring a checkpoint file (checkpoint.ts saves one) into a fresh machine
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
import { closeSync, openSync } from 'node:fs';
import { FormatError } from '../errors.js';
import { GuestRam } from '../kvm/guest-ram.js';
import { prestartThreads } from '../xen/thread-pool.js';
import type { XenMachine } from '../xen/machine.js';
import type { Section } from './records.js';
import { checkMachineConfig } from './machine-config.js';
import { RamLoader } from './ram-load.js';
import { openSnapshot } from './snapshot-file.js';

export type RestorePhase = 'header' | 'ram' | 'loaded' | 'machine' | 'state' | 'done';

export interface RestoreOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Bytes of the file read so far, and its size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * Called as each step begins: header read, first RAM record, RAM loaded
   * and checked, machine creation, state, done (tools/bench/restore-phases.ts).
   */
  onPhase?: (phase: RestorePhase) => void;
  /** Uncompressed RAM records read at once (RamLoader). */
  inFlight?: number;
}

/** The emulator side of a restore, loaded while guest memory is read. */
const loadEmulator = () => Promise.all([import('../xen/machine.js'), import('./incoming.js'), import('../xen/machine-state.js')]);

/** Creates a machine from a checkpoint file, ready to start; nothing is left behind if the file or host is unfit. */
export async function restoreCheckpoint(path: string, opts: RestoreOptions): Promise<XenMachine> {
  const file = await openSnapshot(path, { onWarning: (w) => opts.log(`${path}: ${w.message}`), skipRamData: true, syncReads: true });
  const emulator = loadEmulator();
  emulator.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  let ram: GuestRam | null = null;
  let machine: XenMachine | null = null;
  let loader: RamLoader | null = null;
  let fd = -1;
  try {
    opts.onPhase?.('header');
    const config = checkMachineConfig(file.header.machine, path);
    // The vCPU and timer threads load (50-90 ms of CPU each) while the file is read.
    prestartThreads(config.vcpus);
    fd = openSync(path, 'r');
    // Decoded once the emulator is loaded; which came before the first RAM record matters.
    const sections: Section[] = [];
    let sectionsBeforeRam = -1;
    for await (const rec of file) {
      if (rec.kind === 'section') {
        sections.push(rec.section);
      } else if (rec.kind === 'ram' || rec.kind === 'zero') {
        if (!loader) {
          opts.onPhase?.('ram');
          sectionsBeforeRam = sections.length;
          ram = new GuestRam(config.memBytes, { hugePages: false });
          loader = new RamLoader(fd, ram, path, opts.inFlight === undefined ? {} : { inFlight: opts.inFlight });
        }
        await loader.apply(rec);
        opts.onProgress?.(rec.offset, file.size);
      }
    }
    // Every checksum is checked before the machine exists, let alone runs.
    await loader?.drain();
    opts.onPhase?.('loaded');
    const [{ XenMachine }, { assertHostCanRun, SectionCollector }, { restoreMachineState }] = await emulator;
    const collector = new SectionCollector(path);
    const early = sectionsBeforeRam < 0 ? sections.length : sectionsBeforeRam;
    for (let i = 0; i < early; i++) collector.add(sections[i]!);
    const cpu0 = collector.cpu0;
    if (!cpu0) throw new FormatError(`${path}: no cpu section before guest memory`);
    for (let i = early; i < sections.length; i++) collector.add(sections[i]!);
    opts.onPhase?.('machine');
    ram ??= new GuestRam(config.memBytes, { hugePages: false });
    const m = XenMachine.create({ memBytes: config.memBytes, vcpus: config.vcpus, console: opts.console, log: opts.log, incoming: true, ram });
    machine = m;
    assertHostCanRun(m, cpu0, path);
    opts.onProgress?.(file.size, file.size);
    opts.onPhase?.('state');
    restoreMachineState(m, collector.states);
    opts.onPhase?.('done');
    return m;
  } catch (e) {
    // Reads in flight write into guest RAM: they end before it is unmapped.
    await (loader as RamLoader | null)?.settle();
    if (machine) await (machine as XenMachine).destroy();
    else (ram as GuestRam | null)?.destroy();
    throw e;
  } finally {
    await (loader as RamLoader | null)?.settle();
    if (fd >= 0) closeSync(fd);
    await file.close();
  }
}
