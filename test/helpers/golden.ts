// The golden snapshots in fixtures/snapshots, and which of them this host can
// restore.  A saved guest keeps the CPU features it was started with, so a
// file saved on a host with features this one lacks is refused here
// (restore's own host check, src/migrate/sections-in.ts); the fixtures hold
// each format version once per CPU type, and restore tests take the ones
// this host can run.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assertHostCanRun, SectionCollector } from '../../src/migrate/sections-in.js';
import { openSnapshot } from '../../src/migrate/stream/file.js';
import { XenMachine } from '../../src/machine/machine.js';
import { GOLDEN_DIR } from './paths.js';

/** Every golden file, sorted by name. */
export function goldenFiles(): string[] {
  return readdirSync(GOLDEN_DIR)
    .filter((f) => f.endsWith('.xks'))
    .sort()
    .map((f) => join(GOLDEN_DIR, f));
}

export interface GoldenSplit {
  runnable: string[];
  /** Files this host refuses, with restore's reason. */
  refused: Array<{ file: string; why: string }>;
}

/** Splits the golden files by restore's host check on this host (needs /dev/kvm). */
export async function goldenRunnableHere(): Promise<GoldenSplit> {
  const out: GoldenSplit = { runnable: [], refused: [] };
  const m = XenMachine.create({ memBytes: 16 << 20, vcpus: 1, console: () => {}, log: () => {}, incoming: true });
  try {
    for (const file of goldenFiles()) {
      const collector = new SectionCollector(file);
      const snap = await openSnapshot(file);
      try {
        for await (const r of snap) {
          if (r.kind === 'section' && r.section.name === 'cpu' && r.section.instance === 0) {
            collector.add(r.section);
            break;
          }
        }
      } finally {
        await snap.close();
      }
      try {
        assertHostCanRun(m, collector.cpu0!, file);
        out.runnable.push(file);
      } catch (e) {
        out.refused.push({ file, why: (e as Error).message });
      }
    }
  } finally {
    await m.destroy();
  }
  return out;
}
