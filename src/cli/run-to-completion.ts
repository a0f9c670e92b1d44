// `xenkvm run`: boot a PVH guest and stream its console to stdout.
import { readFileSync } from 'node:fs';
import { InputError, UsageError } from '../errors.js';
import { XenMachine } from '../machine/machine.js';
import { describeOutcome, exitCodeFor, EXIT } from './exit-codes.js';
import { parseSize } from './parse-size.js';
import { startControlSocket } from './control-socket.js';
import { emitShutdown } from '../qmp/events.js';
import type { QmpServer } from '../qmp/server.js';
import { mark } from '../trace.js';

export interface RunArgs {
  elf: string;
  mem: string;
  vcpus: number;
  cmdline: string;
  quiet: boolean;
  qmp?: string | undefined;
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
  if (memBytes % (2 << 20) !== 0 || memBytes < 4 << 20)
    throw new UsageError(`--mem must be a multiple of 2 MiB and at least 4 MiB, got ${text}`);
  return memBytes;
}

/**
 * Runs `machine` (with a control socket at `qmpPath`) until its guest stops or
 * the user interrupts; returns the exit status.  `onStarted` runs right after
 * the guest is let go, and the control socket opens once it has settled (a
 * migration destination confirms to its source there).
 */
export async function runToCompletion(
  machine: XenMachine,
  quiet: boolean,
  qmpPath?: string,
  onStarted?: () => void | Promise<void>,
): Promise<number> {
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    process.stderr.write('\nxenkvm: interrupted: stopping the guest\n');
    machine.requestStop({ kind: 'quit', by: 'a signal' });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let qmp: QmpServer | null = null;
  try {
    // The guest first: opening the socket takes tens of ms, which a restored
    // or migrated guest would otherwise spend paused (clients retry anyway),
    // and a migration's confirmation waits for nothing else either.
    mark('start');
    machine.start({ deferHugePages: onStarted !== undefined });
    mark('started');
    await onStarted?.();
    machine.ram.adviseHugePages();
    if (qmpPath) qmp = await startControlSocket(machine, qmpPath);
    const outcome = await machine.waitForOutcome();
    if (qmp)
      emitShutdown(
        qmp,
        outcome.kind === 'quit'
          ? interrupted
            ? 'host-signal'
            : 'host-qmp-quit'
          : outcome.kind === 'shutdown'
            ? 'guest-shutdown'
            : 'guest-panic',
      );
    if (interrupted) return EXIT.interrupted;
    if (!quiet || outcome.kind !== 'shutdown') process.stderr.write(`xenkvm: ${describeOutcome(outcome)}\n`);
    return exitCodeFor(outcome);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await qmp?.close();
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
  return runToCompletion(machine, args.quiet, args.qmp);
}
