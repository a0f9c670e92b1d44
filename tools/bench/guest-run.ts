// Boots the test guest through the library (XenMachine.boot, start,
// waitForOutcome), as an embedder would, and returns its console output.
import { readFileSync } from 'node:fs';
import { XenMachine, type Outcome } from '../../src/machine/machine.js';
import { GUEST_ELF } from './paths.js';

export interface GuestRun {
  console: string;
  log: string[];
  outcome: Outcome;
  wallMs: number;
}

export async function runGuest(
  cmdline: string,
  opts: { memBytes?: number; timeoutMs?: number; vcpus?: number } = {},
): Promise<GuestRun> {
  const chunks: Buffer[] = [];
  const log: string[] = [];
  const t0 = performance.now();
  const machine = XenMachine.boot({
    elf: readFileSync(GUEST_ELF),
    elfName: GUEST_ELF,
    cmdline,
    memBytes: opts.memBytes ?? 64 << 20,
    vcpus: opts.vcpus ?? 1,
    console: (b) => chunks.push(Buffer.from(b)),
    log: (m) => log.push(m),
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    machine.start();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`guest "${cmdline}" still running after ${opts.timeoutMs ?? 30_000} ms`)),
        opts.timeoutMs ?? 30_000,
      );
    });
    const outcome = await Promise.race([machine.waitForOutcome(), timeout]);
    return { console: Buffer.concat(chunks).toString('latin1'), log, outcome, wallMs: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    await machine.destroy();
  }
}
