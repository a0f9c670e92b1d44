// The commands that look at and steer a running machine: query-status, stop,
// cont, quit, xen-event-list, xen-event-inject.  They talk to the machine only
// through `MachineTarget`, so the protocol side is tested with a fake and the
// machine side by the machine's own tests.

import { InputError } from '../errors.js';
import { virqName } from '../xen/evtchn/virq-names.js';
import type { JsonObject } from '../qmp/protocol.js';
import type { CommandRegistry } from '../qmp/registry.js';
import { arg } from '../qmp/schema.js';
import type { EventChannelInfo } from '../xen/evtchn/list.js';

/** Ports a 64-bit guest can name with the 2-level ABI (64 words of 64 bits). */
export const MAX_EVTCHN_PORTS_2L = 4096;

export type RunState = 'running' | 'paused' | 'shutdown';

export type EventChannelType = EventChannelInfo['type'];

/** What these commands need of a machine. */
export interface MachineTarget {
  status(): RunState;
  /** Stops every vCPU; resolves once none runs guest code. */
  pause(): Promise<void>;
  resume(): void | Promise<void>;
  /** Asks the machine to end; called after the reply to `quit` has been sent. */
  quit(): void | Promise<void>;
  /** Every open port, in port order. */
  eventList(): readonly EventChannelInfo[];
  /** Makes `port` pending exactly as EVTCHNOP_send would (upcall included). Throws a XenkvmError for a closed port. */
  injectEvent(port: number): void;
}

/** A port as `xen-event-list` shows it: QMP-style kebab-case names, the VIRQ's name beside its number. */
export function eventChannelToJson(info: EventChannelInfo): JsonObject {
  const out: JsonObject = { port: info.port, type: info.type, vcpu: info.vcpu };
  switch (info.type) {
    case 'virq':
      out['virq'] = info.virq;
      out['virq-name'] = virqName(info.virq);
      break;
    case 'interdomain':
      out['remote-domain'] = info.remoteDomain;
      out['remote-port'] = info.remotePort;
      break;
    case 'unbound':
      out['remote-domain'] = info.remoteDomain;
      break;
    case 'pirq':
      out['pirq'] = info.pirq;
      break;
    case 'ipi':
      break;
  }
  out['pending'] = info.pending;
  out['masked'] = info.masked;
  return out;
}

export function registerMachineCommands(registry: CommandRegistry, target: MachineTarget): void {
  registry.register({
    name: 'query-status',
    description: "the machine's run state",
    args: {},
    handler: () => {
      const status = target.status();
      return { status, running: status === 'running' };
    },
  });

  registry.register({
    name: 'stop',
    description: 'pause every vCPU',
    args: {},
    handler: async () => {
      // As in QEMU, stopping a stopped machine is not an error.
      if (target.status() === 'running') await target.pause();
    },
  });

  registry.register({
    name: 'cont',
    description: 'resume a paused machine',
    args: {},
    handler: async () => {
      const status = target.status();
      if (status === 'shutdown') throw new InputError('the guest has shut down; it cannot be resumed');
      if (status === 'paused') await target.resume();
    },
  });

  registry.register({
    name: 'quit',
    description: 'end the machine and the xenkvm process',
    args: {},
    handler: (_args, ctx) => {
      // After the reply: quitting closes this very socket.
      ctx.afterReply(() => target.quit());
    },
  });

  registry.register({
    name: 'xen-event-list',
    description: 'every open event channel port',
    args: {},
    handler: () => target.eventList().map(eventChannelToJson),
  });

  registry.register({
    name: 'xen-event-inject',
    description: 'make an event channel port pending, as if the guest had sent to it',
    args: { port: arg.integer({ min: 1, max: MAX_EVTCHN_PORTS_2L - 1 }) },
    handler: ({ port }) => {
      // Checked here too so that the reply is the same whatever the target does with a closed port.
      if (!target.eventList().some((p) => p.port === port))
        throw new InputError(`event channel port ${port} is not open`);
      target.injectEvent(port);
    },
  });
}
