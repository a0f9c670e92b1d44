// Runs a machine until its guest stops: the console is already wired, this
// adds Ctrl-C, the control socket (--qmp), the closing line and the exit
// status.  Shared by run, restore and receive; its imports (the control
// socket and what it serves) are what those commands load to run a guest.
import type { XenMachine } from '../machine/machine.js';
import { describeOutcome, exitCodeFor, EXIT } from './exit-codes.js';
import { startControlSocket } from './control-socket.js';
import { emitShutdown } from '../qmp/events.js';
import type { QmpServer } from '../qmp/server.js';
import { mark } from '../trace.js';
import { ESCAPE_NAME, forwardInput, type Forwarding } from './console-input.js';

/**
 * Runs `machine` (with a control socket at `qmpPath`) until its guest stops or
 * the user interrupts; returns the exit status.  `onStarted` runs right after
 * the guest is let go, and the control socket opens once it has settled (a
 * migration destination confirms to its source there).  With `stdinToConsole`
 * the process's stdin goes to the guest's PV console, if it has one.
 */
export async function runToCompletion(
  machine: XenMachine,
  quiet: boolean,
  qmpPath?: string,
  onStarted?: () => void | Promise<void>,
  stdinToConsole = true,
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
  let input: Forwarding | null = null;
  try {
    // The guest first: opening the socket takes tens of ms, which a restored
    // or migrated guest would otherwise spend paused (clients retry anyway),
    // and a migration's confirmation waits for nothing else either.
    mark('start');
    machine.start({ deferHugePages: onStarted !== undefined });
    mark('started');
    await onStarted?.();
    machine.ram.adviseHugePages();
    if (stdinToConsole && machine.pvConsole.attached) input = consoleFromStdin(machine);
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
    input?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await qmp?.close();
    await machine.destroy();
  }
}

/** The run's stdin into the guest's PV console (console-input.ts). */
function consoleFromStdin(machine: XenMachine): Forwarding {
  const input = forwardInput({
    write: (bytes) => machine.pvConsole.input(bytes),
    whenRoom: () => machine.pvConsole.whenInputRoom(1000),
  });
  void input.ended.then((why) => {
    if (why === 'escape')
      process.stderr.write(
        `\r\nxenkvm: ${ESCAPE_NAME}: console input detached; the guest runs on (Ctrl-C stops it)\r\n`,
      );
  });
  return input;
}
