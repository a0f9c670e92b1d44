// The control socket of a running machine (`--qmp PATH`): composes the QMP
// commands of each feature (machine, console, live migration, snapshot), each bound to
// this XenMachine through its feature's target interface.  Pausing and
// resuming from here announce STOP and RESUME, whichever command does it.
import { registerMachineCommands } from '../machine/qmp-commands.js';
import { registerXenstoreCommands } from '../machine/xenstore-commands.js';
import { registerConsoleCommands } from '../machine/console-commands.js';
import { registerMigrationCommands } from '../migrate/live/qmp-commands.js';
import { migrate } from '../migrate/live/send.js';
import { registerSnapshotCommands } from '../migrate/snapshot/qmp-commands.js';
import { saveSnapshot } from '../migrate/snapshot/save.js';
import { CommandRegistry } from '../qmp/registry.js';
import { QmpServer } from '../qmp/server.js';
import { emitResume, emitStop } from '../qmp/events.js';
import { eventChannelList, injectEvent } from '../xen/evtchn/list.js';
import type { XenMachine } from '../machine/machine.js';

export async function startControlSocket(machine: XenMachine, path: string): Promise<QmpServer> {
  const registry = new CommandRegistry();
  let server: QmpServer | null = null;
  const events = () => server;
  const status = () => machine.status;
  const pause = async () => {
    await machine.pause();
    if (server) emitStop(server);
  };
  const resume = () => {
    machine.resume();
    if (server) emitResume(server);
  };
  registerMachineCommands(registry, {
    status,
    pause,
    resume,
    quit: () => machine.requestStop({ kind: 'quit', by: 'QMP quit' }),
    eventList: () => eventChannelList(machine.context),
    injectEvent: (port) => injectEvent(machine.context, port),
  });
  registerMigrationCommands(registry, {
    status,
    send: (sock, opts) => migrate(machine, sock, opts),
    quit: (by) => machine.requestStop({ kind: 'quit', by }),
    events,
  });
  registerSnapshotCommands(registry, {
    status,
    pause,
    resume,
    save: (file, opts) => saveSnapshot(machine, file, opts),
    events,
  });
  registerXenstoreCommands(registry, { xenstore: () => machine.xenstoreToolstack, status, events });
  registerConsoleCommands(registry, {
    hasRing: () => machine.pvConsole.attached,
    read: (cursor) => machine.pvConsole.read(cursor),
    whenOutput: (ms, signal) => machine.pvConsole.whenOutput(ms, signal),
    write: (bytes) => machine.pvConsole.input(bytes),
  });
  server = await QmpServer.listen({ path, registry });
  return server;
}
