// The control socket of a running machine (`--qmp PATH`): QMP machine
// commands bound to this XenMachine, with STOP/RESUME events when its run
// state changes.
import { registerMachineCommands } from '../machine/qmp-commands.js';
import { CommandRegistry } from '../qmp/registry.js';
import { QmpServer } from '../qmp/server.js';
import { emitResume, emitStop } from '../qmp/events.js';
import { eventChannelList, injectEvent } from '../xen/evtchn/list.js';
import { saveSnapshot } from '../migrate/snapshot/save.js';
import { registerMigrationCommands } from '../migrate/live/qmp-commands.js';
import { arg } from '../qmp/schema.js';
import type { JsonObject } from '../qmp/protocol.js';
import type { XenMachine } from '../machine/machine.js';

/** QMP event with {done, total} bytes of guest RAM saved. */
export const SNAPSHOT_PROGRESS = 'SNAPSHOT_PROGRESS';

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
  registerMigrationCommands(registry, machine, () => server);
  registry.register({
    name: 'snapshot',
    description: 'save the guest to a file (paused meanwhile); resumes it unless stop is true',
    args: {
      path: arg.string({ maxLength: 4096 }),
      stop: arg.optional(arg.boolean()),
      compress: arg.optional(arg.boolean()),
    },
    handler: async (a) => {
      const wasRunning = machine.status === 'running';
      if (wasRunning) {
        await machine.pause();
        if (server) emitStop(server);
      }
      let resumed = false;
      const resumeIfRunning = () => {
        if (resumed || !wasRunning || a.stop) return;
        resumed = true;
        machine.resume();
        if (server) emitResume(server);
      };
      try {
        let last = 0;
        const summary = await saveSnapshot(machine, a.path, {
          compress: a.compress ?? false,
          // Clients draw a progress bar from these (xenkvm snapshot on a TTY).
          onProgress: (done, total) => {
            const now = performance.now();
            if (server && (now - last >= 100 || done === total)) {
              last = now;
              server.emitEvent(SNAPSHOT_PROGRESS, { done, total });
            }
          },
          // Everything is in the page cache: the guest runs during fsync and rename.
          onStateWritten: resumeIfRunning,
        });
        return { ...summary } as unknown as JsonObject;
      } finally {
        resumeIfRunning();
      }
    },
  });
  server = await QmpServer.listen({ path, registry });
  return server;
}
