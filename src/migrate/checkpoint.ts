// A checkpoint is a migration into a file: the HEADER names the machine and
// embeds every section's schema, then one SECTION per component instance
// (src/xen/machine-state.ts), then guest RAM with zero pages left out, then
// END.  Restore reads it back into a fresh machine in this process, checking
// first that this host can run it.
import { FormatError, NoKvmError } from '../errors.js';
type CpuidWords = { function: number; index: number; ebx: number; ecx: number; edx: number };
import { packageVersion } from '../qmp/version.js';
import { decodeState, encodeState } from '../vmstate/index.js';
import { sectionSchemas } from '../xen/sections.js';
import { componentFor, restoreMachineState, saveMachineState, type MachineCpuState } from '../xen/machine-state.js';
import { MAX_VCPUS, XenMachine } from '../xen/machine.js';
import { closeSync, openSync } from 'node:fs';
import { openSnapshot, PAGE_SIZE, writeRam, writeSnapshotFile } from './index.js';
import { RamLoader } from './ram-load.js';

export interface MachineConfig {
  memBytes: number;
  vcpus: number;
}

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
  const machine: MachineConfig = { memBytes: m.ram.size, vcpus: m.handles.length };
  let ram = { dataPages: 0, zeroPages: 0 };
  let written = 0;
  const compressed = opts.compress ?? false;
  const result = await writeSnapshotFile(path, { producer: `xenkvm ${packageVersion()}`, machine, schemas: sectionSchemas() }, async (w) => {
    for (const s of sections) await w.writeSection({ name: s.name, instance: s.instance, version: s.desc.version, payload: encodeState(s.desc, s.state) });
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

function checkConfig(machine: unknown, path: string): MachineConfig {
  const c = machine as Partial<MachineConfig> | null;
  const ok = c !== null && typeof c === 'object' && Number.isSafeInteger(c.memBytes) && c.memBytes! > 0 && c.memBytes! % (2 << 20) === 0 &&
    Number.isInteger(c.vcpus) && c.vcpus! >= 1 && c.vcpus! <= MAX_VCPUS;
  if (!ok) throw new FormatError(`${path}: the machine configuration in the header is invalid`);
  return { memBytes: c.memBytes!, vcpus: c.vcpus! };
}

/** CPUID feature words a guest may rely on: leaf, sub-leaf, register. */
const FEATURE_WORDS: ReadonlyArray<[number, number, 'ecx' | 'edx' | 'ebx']> = [
  [1, 0, 'ecx'], [1, 0, 'edx'], [7, 0, 'ebx'], [7, 0, 'ecx'], [7, 0, 'edx'], [0x80000001, 0, 'ecx'], [0x80000001, 0, 'edx'],
];
/** Bits KVM reports as "supported" only by software convention (hypervisor bit, OSXSAVE/OSPKE mirror CR4). */
const SOFT_BITS: Record<string, number> = { '1:ecx': (1 << 31) | (1 << 27), '7:ecx': 1 << 4 };

/** Says which CPU features the saved vCPUs use that this host's KVM cannot give. */
function checkHostCpu(saved: readonly CpuidWords[], host: readonly CpuidWords[]): string[] {
  const missing: string[] = [];
  for (const [fn, idx, reg] of FEATURE_WORDS) {
    const s = saved.find((l) => l.function === fn && l.index === idx);
    if (!s) continue;
    const h = host.find((l) => l.function === fn && l.index === idx);
    const lack = (s[reg] & ~(h ? h[reg] : 0) & ~(SOFT_BITS[`${fn}:${reg}`] ?? 0)) >>> 0;
    if (lack !== 0) missing.push(`CPUID 0x${fn.toString(16)}.${idx} ${reg.toUpperCase()} bits 0x${lack.toString(16)}`);
  }
  return missing;
}

export interface RestoreOptions {
  console: (bytes: Uint8Array) => void;
  log: (message: string) => void;
  /** Bytes of the file read so far, and its size. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/** Creates a machine from a checkpoint file, ready to start; nothing is created if the file or host is unfit. */
export async function restoreCheckpoint(path: string, opts: RestoreOptions): Promise<XenMachine> {
  const file = await openSnapshot(path, { onWarning: (w) => opts.log(`${path}: ${w.message}`), skipRamData: true });
  let machine: XenMachine | null = null;
  let loader: RamLoader | null = null;
  const fd = openSync(path, 'r');
  try {
    const config = checkConfig(file.header.machine, path);
    const states = new Map<string, Map<number, unknown>>();
    const ensureMachine = (): XenMachine => {
      if (machine) return machine;
      const cpu0 = states.get('cpu')?.get(0) as MachineCpuState | undefined;
      if (!cpu0) throw new FormatError(`${path}: no cpu section before guest memory`);
      const m = XenMachine.create({ memBytes: config.memBytes, vcpus: config.vcpus, console: opts.console, log: opts.log });
      machine = m;
      // What a vCPU gets on this host (KVM may adjust the CPUID it is given),
      // checked before any state is written or any guest code runs.
      const effective = (componentFor('cpu')!.save(m, 0) as MachineCpuState).cpuid;
      const missing = checkHostCpu(cpu0.cpuid, effective);
      if (missing.length > 0) throw new NoKvmError(`${path}: this host cannot run the saved guest: it lacks ${missing.join(', ')}`);
      return m;
    };
    for await (const rec of file) {
      if (rec.kind === 'section') {
        const { name, instance } = rec.section;
        const c = componentFor(name);
        if (!c) throw new FormatError(`${path}: unknown mandatory section '${name}' (version ${rec.section.version}); this xenkvm cannot restore it`);
        let byInstance = states.get(name);
        if (!byInstance) states.set(name, (byInstance = new Map()));
        if (byInstance.has(instance)) throw new FormatError(`${path}: section ${name}[${instance}] appears twice`);
        byInstance.set(instance, decodeState(c.desc, rec.section.payload));
      } else if (rec.kind === 'ram' || rec.kind === 'zero') {
        loader ??= new RamLoader(fd, ensureMachine().ram, path);
        loader.apply(rec);
        opts.onProgress?.(rec.offset, file.size);
      }
    }
    const m = ensureMachine();
    opts.onProgress?.(file.size, file.size);
    restoreMachineState(m, states);
    return m;
  } catch (e) {
    await (machine as XenMachine | null)?.destroy();
    throw e;
  } finally {
    closeSync(fd);
    await file.close();
  }
}
