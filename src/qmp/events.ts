// The asynchronous events the machine announces on the control socket, with
// QEMU's names and data so QMP tooling reads them unchanged.  The machine
// calls these where its run state changes (whatever caused the change: a QMP
// command, a snapshot, the guest itself), not the commands that request it.

import type { EventSink } from './server.js';

/** QEMU's ShutdownCause values that can happen here. */
export type ShutdownCause = 'host-qmp-quit' | 'host-signal' | 'guest-shutdown' | 'guest-reset' | 'guest-panic';

/** Every vCPU has stopped. */
export function emitStop(sink: EventSink): void {
  sink.emitEvent('STOP');
}

/** The vCPUs run again. */
export function emitResume(sink: EventSink): void {
  sink.emitEvent('RESUME');
}

/** The machine is ending; `guest` tells whether the guest asked for it. */
export function emitShutdown(sink: EventSink, cause: ShutdownCause): void {
  sink.emitEvent('SHUTDOWN', { guest: cause.startsWith('guest-'), reason: cause });
}
