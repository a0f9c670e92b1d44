// The machine commands against a fake MachineTarget.  A fake is right here:
// these tests pin the protocol side (names, argument checks, reply shapes);
// the real XenMachine behind the interface is tested with KVM by its owner.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import type { EventChannelInfo } from '../../src/xen/evtchn/list.js';
import { registerMachineCommands, type MachineTarget, type RunState } from '../../src/machine/qmp-commands.js';
import { emitResume, emitShutdown, emitStop } from '../../src/qmp/events.js';
import { CommandRegistry } from '../../src/qmp/registry.js';
import type { EventSink } from '../../src/qmp/server.js';
import { RawConn, startServer } from '../helpers/qmp.js';
import { tempDir } from '../helpers/tmp.js';
import { deferred } from '../helpers/async.js';

class FakeMachine implements MachineTarget {
  state: RunState = 'running';
  calls: string[] = [];
  ports: EventChannelInfo[] = [
    { port: 1, type: 'virq', virq: 0, vcpu: 0, pending: false, masked: false },
    { port: 2, type: 'virq', virq: 0, vcpu: 1, pending: true, masked: false },
    { port: 3, type: 'ipi', vcpu: 1, pending: false, masked: true },
    { port: 4, type: 'interdomain', remoteDomain: 0x7ff0, remotePort: 5, vcpu: 0, pending: false, masked: false },
    { port: 5, type: 'interdomain', remoteDomain: 0x7ff0, remotePort: 4, vcpu: 0, pending: false, masked: false },
    { port: 6, type: 'unbound', remoteDomain: 0, vcpu: 0, pending: false, masked: false },
    { port: 7, type: 'virq', virq: 17, vcpu: 0, pending: false, masked: false },
    { port: 8, type: 'pirq', pirq: 9, vcpu: 0, pending: false, masked: false },
  ];
  quitGate = deferred();

  status(): RunState {
    return this.state;
  }
  async pause(): Promise<void> {
    this.calls.push('pause');
    await new Promise((r) => setTimeout(r, 5));
    this.state = 'paused';
  }
  resume(): void {
    this.calls.push('resume');
    this.state = 'running';
  }
  quit(): void {
    this.calls.push('quit');
    this.quitGate.resolve();
  }
  eventList(): readonly EventChannelInfo[] {
    return this.ports;
  }
  injectEvent(port: number): void {
    const p = this.ports.find((x) => x.port === port);
    if (!p) throw new InputError(`port ${port} closed`);
    this.calls.push(`inject ${port}`);
    this.ports = this.ports.map((x) => (x.port === port ? { ...x, pending: true } : x));
  }
}

async function withMachine(fn: (c: RawConn, m: FakeMachine, events: EventSink) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir('qmp');
  const m = new FakeMachine();
  const registry = new CommandRegistry();
  registerMachineCommands(registry, m);
  const { server, path } = await startServer(dir, registry);
  try {
    const c = await RawConn.ready(path);
    await fn(c, m, server);
    c.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
}

test('query-commands lists the machine commands', () =>
  withMachine(async (c) => {
    const names = ((await c.call('query-commands'))['return'] as Array<{ name: string }>).map((x) => x.name);
    assert.equal(names, [
      'cont',
      'query-commands',
      'query-status',
      'quit',
      'stop',
      'xen-event-inject',
      'xen-event-list',
    ]);
  }));

test('query-status, stop and cont follow the machine, like QEMU', () =>
  withMachine(async (c, m) => {
    assert.equal(await c.call('query-status'), { return: { status: 'running', running: true } });
    assert.equal(await c.call('stop', undefined, 1), { return: {}, id: 1 });
    assert.equal(await c.call('query-status'), { return: { status: 'paused', running: false } });
    assert.equal(await c.call('stop'), { return: {} }, 'stopping a stopped machine is fine');
    assert.equal(await c.call('cont'), { return: {} });
    assert.equal(await c.call('cont'), { return: {} }, 'continuing a running machine is fine');
    assert.equal(m.calls, ['pause', 'resume']);
    m.state = 'shutdown';
    assert.equal(await c.call('query-status'), { return: { status: 'shutdown', running: false } });
    assert.equal(await c.call('cont', undefined, 2), {
      error: { class: 'GenericError', desc: 'the guest has shut down; it cannot be resumed' },
      id: 2,
    });
    assert.equal(await c.call('stop', { now: true }), {
      error: { class: 'GenericError', desc: "Parameter 'now' is unexpected" },
    });
  }));

test('quit answers first, then asks the machine to quit', () =>
  withMachine(async (c, m) => {
    c.send({ execute: 'quit', id: 'q' });
    assert.equal(await c.next(), { return: {}, id: 'q' });
    await m.quitGate.promise;
    assert.equal(m.calls, ['quit']);
  }));

test('xen-event-list shows every port with its binding by name', () =>
  withMachine(async (c) => {
    const r = (await c.call('xen-event-list'))['return'];
    assert.equal(r, [
      { port: 1, type: 'virq', vcpu: 0, virq: 0, 'virq-name': 'VIRQ_TIMER', pending: false, masked: false },
      { port: 2, type: 'virq', vcpu: 1, virq: 0, 'virq-name': 'VIRQ_TIMER', pending: true, masked: false },
      { port: 3, type: 'ipi', vcpu: 1, pending: false, masked: true },
      {
        port: 4,
        type: 'interdomain',
        vcpu: 0,
        'remote-domain': 0x7ff0,
        'remote-port': 5,
        pending: false,
        masked: false,
      },
      {
        port: 5,
        type: 'interdomain',
        vcpu: 0,
        'remote-domain': 0x7ff0,
        'remote-port': 4,
        pending: false,
        masked: false,
      },
      { port: 6, type: 'unbound', vcpu: 0, 'remote-domain': 0, pending: false, masked: false },
      { port: 7, type: 'virq', vcpu: 0, virq: 17, 'virq-name': 'VIRQ_17', pending: false, masked: false },
      { port: 8, type: 'pirq', vcpu: 0, pirq: 9, pending: false, masked: false },
    ]);
  }));

test('xen-event-inject makes an open port pending and refuses anything else', () =>
  withMachine(async (c, m) => {
    assert.equal(await c.call('xen-event-inject', { port: 3 }, 1), { return: {}, id: 1 });
    assert.equal(m.calls, ['inject 3']);
    const list = (await c.call('xen-event-list'))['return'] as Array<{ port: number; pending: boolean }>;
    assert.ok(list.find((p) => p.port === 3)!.pending);
    const bad: Array<[unknown, string]> = [
      [{ port: 99 }, 'event channel port 99 is not open'],
      [{ port: 0 }, "Parameter 'port' must be in 1..4095"],
      [{ port: 4096 }, "Parameter 'port' must be in 1..4095"],
      [{ port: -1 }, "Parameter 'port' must be in 1..4095"],
      [{ port: 1.5 }, "Parameter 'port' expects integer"],
      [{ port: '3' }, "Parameter 'port' expects integer"],
      [{ port: null }, "Parameter 'port' expects integer"],
      [{}, "Parameter 'port' is missing"],
      [undefined, "Parameter 'port' is missing"],
    ];
    for (const [args, desc] of bad) {
      assert.equal(
        await c.call('xen-event-inject', args),
        { error: { class: 'GenericError', desc } },
        JSON.stringify(args),
      );
    }
    assert.equal(m.calls, ['inject 3'], 'no bad call reached the machine');
  }));

test('the machine events carry QEMU names and data', () =>
  withMachine(async (c, _m, server) => {
    emitStop(server);
    emitResume(server);
    emitShutdown(server, 'guest-shutdown');
    emitShutdown(server, 'host-qmp-quit');
    const got = [];
    for (let i = 0; i < 4; i++) {
      const e = await c.next();
      got.push([e['event'], e['data']]);
    }
    assert.equal(got, [
      ['STOP', {}],
      ['RESUME', {}],
      ['SHUTDOWN', { guest: true, reason: 'guest-shutdown' }],
      ['SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }],
    ]);
  }));

test.run();
