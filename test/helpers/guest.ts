// Boots the test guest through the library and collects its console, for
// tests that need real /dev/kvm (they ask kvm.ts first whether they can run).
import { readFileSync } from 'node:fs';
import { XenMachine, type Outcome } from '../../src/machine/machine.js';
import { GUEST_ELF } from './paths.js';

export interface GuestRun {
  machine: XenMachine;
  /** Console output so far. */
  console(): string;
  /** Resolves when the console contains `text`, or rejects after `ms`. */
  waitFor(text: string | RegExp, ms: number): Promise<void>;
  outcome: Promise<Outcome>;
}

export function bootGuest(cmdline: string, opts: { vcpus?: number; mem?: number } = {}): GuestRun {
  let out = '';
  const waiters: Array<() => void> = [];
  const machine = XenMachine.boot({
    elf: readFileSync(GUEST_ELF),
    elfName: 'guest.elf',
    cmdline,
    memBytes: opts.mem ?? 64 << 20,
    vcpus: opts.vcpus ?? 1,
    console: (b) => {
      out += Buffer.from(b).toString('latin1');
      for (const w of waiters.splice(0)) w();
    },
    log: () => {},
  });
  machine.start();
  const outcome = machine.waitForOutcome();
  const waitFor = (text: string | RegExp, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timed out after ${ms} ms waiting for ${text}; console:\n${out.slice(-2000)}`)),
        ms,
      );
      const check = () => {
        if (typeof text === 'string' ? out.includes(text) : text.test(out)) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { machine, console: () => out, waitFor, outcome };
}

/** Runs a guest program to completion (bounded by `ms`) and returns its console and outcome. */
export async function runGuest(
  cmdline: string,
  opts: { vcpus?: number; mem?: number; ms?: number } = {},
): Promise<{ console: string; outcome: Outcome }> {
  const g = bootGuest(cmdline, opts);
  try {
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () =>
          reject(
            new Error(
              `guest '${cmdline}' did not finish in ${opts.ms ?? 30000} ms; console:\n${g.console().slice(-2000)}`,
            ),
          ),
        opts.ms ?? 30000,
      ).unref(),
    );
    const outcome = await Promise.race([g.outcome, timeout]);
    return { console: g.console(), outcome };
  } finally {
    await g.machine.destroy();
  }
}

/** The soak guest's status lines as [t, ticks, ipi, xdom]. */
export const soakStatusLines = (text: string) =>
  [...text.matchAll(/soak: t=(\d+)s ticks=(\d+) ipi=(\d+) xdom=(\d+)/g)].map(
    (m) => m.slice(1).map(Number) as [number, number, number, number],
  );
