// `xenkvm run`: boot a PVH guest and stream its console to stdout.
import { readFileSync } from 'node:fs';
import { InputError, UsageError } from '../errors.js';
import { XenMachine } from '../xen/machine.js';
import { describeOutcome, exitCodeFor, EXIT } from './exit-codes.js';
import { parseSize } from './parse-size.js';

export interface RunArgs {
  elf: string;
  mem: string;
  vcpus: number;
  cmdline: string;
  quiet: boolean;
}

export function readGuestImage(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${path}: no such file`);
    if (code === 'EISDIR') throw new InputError(`${path}: is a directory, not a guest image`);
    throw new InputError(`${path}: cannot read (${code ?? (e as Error).message})`);
  }
}

export function parseMem(text: string): number {
  const memBytes = parseSize(text, '--mem');
  if (memBytes % (2 << 20) !== 0 || memBytes < 4 << 20) throw new UsageError(`--mem must be a multiple of 2 MiB and at least 4 MiB, got ${text}`);
  return memBytes;
}

/** Runs `machine` until its guest stops or the user interrupts; returns the exit status. */
export async function runToCompletion(machine: XenMachine, quiet: boolean): Promise<number> {
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    process.stderr.write('\nxenkvm: interrupted: stopping the guest\n');
    void machine.destroy();
  };
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  try {
    machine.start();
    const outcome = await Promise.race([
      machine.waitForOutcome(),
      new Promise<null>((resolve) => { const t = setInterval(() => { if (interrupted) { clearInterval(t); resolve(null); } }, 50); machine.waitForOutcome().then(() => clearInterval(t)); }),
    ]);
    if (outcome === null) return EXIT.interrupted;
    if (!quiet || outcome.kind !== 'shutdown') process.stderr.write(`xenkvm: ${describeOutcome(outcome)}\n`);
    return exitCodeFor(outcome);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await machine.destroy();
  }
}

export async function runCommand(args: RunArgs): Promise<number> {
  const memBytes = parseMem(args.mem);
  const elf = readGuestImage(args.elf);
  const machine = XenMachine.boot({
    elf,
    elfName: args.elf,
    cmdline: args.cmdline,
    memBytes,
    vcpus: args.vcpus,
    console: (bytes) => process.stdout.write(bytes),
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
  });
  return runToCompletion(machine, args.quiet);
}
