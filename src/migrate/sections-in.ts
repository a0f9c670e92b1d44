// What every consumer of a state stream (restore from a file, the live
// migration destination) does the same way: validate the HEADER's machine
// configuration, collect and decode the SECTION records, and check that this
// host can run the saved vCPUs before any state is written.
import { FormatError, NoKvmError } from '../errors.js';
import { decodeState } from '../vmstate/index.js';
import type { XenMachine } from '../machine/machine.js';
import { componentFor, type MachineCpuState } from '../machine/sections.js';
import type { Section } from './stream/records.js';

export { checkMachineConfig, type MachineConfig } from '../machine/config.js';

/** Decoded sections by name and instance, as restoreMachineState takes them. */
export class SectionCollector {
  readonly states = new Map<string, Map<number, unknown>>();
  count = 0;
  constructor(private readonly where: string) {}

  add(section: Section): void {
    const { name, instance, version } = section;
    const c = componentFor(name);
    if (!c)
      throw new FormatError(
        `${this.where}: unknown mandatory section '${name}' (version ${version}); this xenkvm cannot restore it`,
      );
    let byInstance = this.states.get(name);
    if (!byInstance) this.states.set(name, (byInstance = new Map()));
    if (byInstance.has(instance)) throw new FormatError(`${this.where}: section ${name}[${instance}] appears twice`);
    const inner = (section.payload as { v?: unknown } | null)?.v;
    if (inner !== version)
      throw new FormatError(
        `${this.where}: section ${name}[${instance}] says version ${version} but carries a version ${String(inner)} state`,
      );
    byInstance.set(instance, decodeState(c.desc, section.payload));
    this.count++;
  }

  /** vCPU 0's saved state, or undefined before its section arrived. */
  get cpu0(): MachineCpuState | undefined {
    return this.states.get('cpu')?.get(0) as MachineCpuState | undefined;
  }
}

type CpuidWords = { function: number; index: number; ebx: number; ecx: number; edx: number };

/** CPUID feature words a guest may rely on: leaf, sub-leaf, register. */
const FEATURE_WORDS: ReadonlyArray<[number, number, 'ecx' | 'edx' | 'ebx']> = [
  [1, 0, 'ecx'],
  [1, 0, 'edx'],
  [7, 0, 'ebx'],
  [7, 0, 'ecx'],
  [7, 0, 'edx'],
  [0x80000001, 0, 'ecx'],
  [0x80000001, 0, 'edx'],
];
/** Bits KVM reports as "supported" only by software convention (hypervisor bit, OSXSAVE/OSPKE mirror CR4). */
const SOFT_BITS: Record<string, number> = { '1:ecx': (1 << 31) | (1 << 27), '7:ecx': 1 << 4 };

/** Says which CPU features the saved vCPUs use that this host's KVM cannot give. */
function missingCpuFeatures(saved: readonly CpuidWords[], host: readonly CpuidWords[]): string[] {
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

/**
 * Refuses (NoKvmError) when the saved vCPU 0 uses CPU features that a vCPU of
 * `m` does not get on this host (KVM may adjust the CPUID it is given, so the
 * fresh vCPU's effective CPUID, read at creation, is what counts).  Call
 * before writing state.
 */
export function assertHostCanRun(m: XenMachine, savedCpu0: MachineCpuState, where: string): void {
  const missing = missingCpuFeatures(savedCpu0.cpuid, m.effectiveCpuid);
  if (missing.length > 0)
    throw new NoKvmError(`${where}: this host cannot run the saved guest: it lacks ${missing.join(', ')}`);
}
