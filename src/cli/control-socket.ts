// The control socket of a running machine (`--qmp PATH`): QMP machine
// commands bound to this XenMachine, with STOP/RESUME events when its run
// state changes.
import { registerMachineCommands } from '../qmp/machine-commands.js';
import { CommandRegistry } from '../qmp/registry.js';
import { QmpServer } from '../qmp/server.js';
import { emitResume, emitStop } from '../qmp/events.js';
import { eventChannelList, injectEvent } from '../xen/event-list.js';
import type { XenMachine } from '../xen/machine.js';

export async function startControlSocket(machine: XenMachine, path: string): Promise<QmpServer> {
  const registry = new CommandRegistry();
  let server: QmpServer | null = null;
  registerMachineCommands(registry, {
    status: () => machine.status,
    pause: async () => {
      await machine.pause();
      if (server) emitStop(server);
    },
    resume: () => {
      machine.resume();
      if (server) emitResume(server);
    },
    quit: () => machine.requestStop({ kind: 'quit', by: 'QMP quit' }),
    eventList: () => eventChannelList(machine.context),
    injectEvent: (port) => injectEvent(machine.context, port),
  });
  server = await QmpServer.listen({ path, registry });
  return server;
}
