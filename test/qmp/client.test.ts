// The control-socket client and `xenkvm ctl`, against real servers: answers,
// error replies, timeouts, and the one-line messages for sockets that are
// missing, dead, not ours or not xenkvm's.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, linkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { IoError, QmpError } from '../../src/errors.js';
import { ctlCommand, type CtlArgs } from '../../src/cli/ctl.js';
import { executeOnce, QmpClient } from '../../src/qmp/client.js';
import { registerMachineCommands } from '../../src/machine/qmp-commands.js';
import type { EventChannelInfo } from '../../src/xen/evtchn/list.js';
import type { QmpEvent } from '../../src/qmp/protocol.js';
import { CommandRegistry } from '../../src/qmp/registry.js';
import { arg } from '../../src/qmp/schema.js';
import { startServer } from '../helpers/qmp.js';
import { tempDir } from '../helpers/tmp.js';
import { deferred } from '../helpers/async.js';
import { distUrl } from '../helpers/paths.js';

const PORTS: EventChannelInfo[] = [
  { port: 1, type: 'virq', virq: 0, vcpu: 0, pending: false, masked: false },
  { port: 2, type: 'virq', virq: 0, vcpu: 1, pending: true, masked: false },
  { port: 12, type: 'interdomain', remoteDomain: 0x7ff0, remotePort: 13, vcpu: 3, pending: false, masked: true },
  { port: 13, type: 'ipi', vcpu: 0, pending: false, masked: false },
];

function registry(): CommandRegistry {
  const r = new CommandRegistry();
  let paused = false;
  registerMachineCommands(r, {
    status: () => (paused ? 'paused' : 'running'),
    pause: async () => {
      paused = true;
    },
    resume: () => {
      paused = false;
    },
    quit: () => {},
    eventList: () => PORTS,
    injectEvent: () => {},
  });
  r.register({ name: 'add', args: { a: arg.number(), b: arg.number() }, handler: ({ a, b }) => ({ sum: a + b }) });
  r.register({ name: 'hang', args: {}, handler: () => new Promise(() => {}) });
  r.register({ name: 'late', args: {}, handler: () => new Promise((res) => setTimeout(() => res('late'), 100)) });
  return r;
}

async function withServer(fn: (path: string, dir: string, emit: (n: string) => void) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, registry());
  try {
    await fn(path, dir, (n) => server.emitEvent(n));
  } finally {
    await server.destroy();
    cleanup();
  }
}

/** Runs ctl with captured output. */
async function ctl(args: Omit<CtlArgs, 'out' | 'err'>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await ctlCommand({
    ...args,
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  });
  return { code, out, err };
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

test('client: greeting, results, error replies as QmpError, events', () =>
  withServer(async (path, _dir, emit) => {
    const events: QmpEvent[] = [];
    const c = await QmpClient.connect(path, { onEvent: (e) => events.push(e) });
    assert.type(c.greeting.QMP.version.xenkvm, 'string');
    assert.equal(await c.execute('add', { a: 2, b: 40 }), { sum: 42 });
    const results = await Promise.all([1, 2, 3].map((n) => c.execute('add', { a: n, b: n })));
    assert.equal(results, [{ sum: 2 }, { sum: 4 }, { sum: 6 }]);
    const e = await rejects(c.execute('add', { a: 1 }));
    assert.instance(e, QmpError);
    assert.is((e as QmpError).errorClass, 'GenericError');
    assert.is(e.message, "Parameter 'b' is missing");
    const nf = await rejects(c.execute('nope'));
    assert.is((nf as QmpError).errorClass, 'CommandNotFound');
    emit('STOP');
    assert.equal(
      await c.execute('query-status'),
      { status: 'running', running: true },
      'event does not disturb replies',
    );
    assert.equal(
      events.map((x) => x.event),
      ['STOP'],
    );
    c.close();
    const after = await rejects(c.execute('query-status'));
    assert.instance(after, IoError);
  }));

test('client: a command timeout and a server going away fail the pending commands', async () => {
  await withServer(async (path) => {
    const c = await QmpClient.connect(path, { commandTimeoutMs: 50 });
    const e = await rejects(c.execute('late'));
    assert.instance(e, IoError);
    assert.match(e.message, /^no answer to 'late' from .* within 50 ms$/);
    // The server answers in order: 'late' (dropped, its caller gave up), then this.
    assert.equal(
      await c.execute('add', { a: 1, b: 1 }, { timeoutMs: 1000 }),
      { sum: 2 },
      'a late reply does not confuse the next command',
    );
    c.close();
  });
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, registry());
  try {
    const c = await QmpClient.connect(path);
    const pending = rejects(c.execute('hang', undefined, { timeoutMs: 0 }));
    await new Promise((r) => setTimeout(r, 20));
    await server.destroy();
    const e = await pending;
    assert.instance(e, IoError);
    assert.match(e.message, /closed the connection$/);
  } finally {
    cleanup();
  }
});

test('client: one-line errors for missing, dead and foreign sockets', async () => {
  const { dir, cleanup } = tempDir('qmp');
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  try {
    const missing = join(dir, 'missing.sock');
    let e = await rejects(QmpClient.connect(missing));
    assert.instance(e, IoError);
    assert.is(e.message, `no xenkvm is listening on ${missing}`);

    // A socket file with nobody behind it: ECONNREFUSED, same message.
    const stale = join(dir, 'stale.sock');
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(join(dir, 'x'), r));
    linkSync(join(dir, 'x'), stale);
    await new Promise((r) => dead.close(r));
    e = await rejects(QmpClient.connect(stale));
    assert.is(e.message, `no xenkvm is listening on ${stale}`);

    const file = join(dir, 'plain');
    writeFileSync(file, '');
    e = await rejects(QmpClient.connect(file));
    assert.instance(e, IoError);
    assert.match(e.message, /plain/);

    // Something that speaks, but not QMP.
    const chatty = join(dir, 'chatty.sock');
    const other = createServer((s) => s.end('SSH-2.0-OpenSSH\n'));
    servers.push(other);
    await new Promise<void>((r) => other.listen(chatty, r));
    e = await rejects(QmpClient.connect(chatty));
    assert.is(e.message, `${chatty} sent something that is not JSON; is it a xenkvm control socket?`);

    // Something that says nothing.
    const mute = join(dir, 'mute.sock');
    const silent = createServer((s) => void sockets.push(s));
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(mute, r));
    e = await rejects(QmpClient.connect(mute, { connectTimeoutMs: 50 }));
    assert.is(e.message, `no greeting from ${mute} within 50 ms; is a xenkvm listening there?`);
  } finally {
    for (const s of servers) {
      for (const k of sockets) k.destroy();
      await new Promise((r) => s.close(r));
    }
    cleanup();
  }
});

test('another user cannot connect: the 0600 mode is what stops them', async () => {
  if (process.getuid!() !== 0) {
    console.log('  (skipped: needs root to run a client as another user)');
    return;
  }
  const { dir, cleanup } = tempDir('qmp');
  chmodSync(dir, 0o755); // let the other user reach the socket itself
  const { server, path } = await startServer(dir, registry());
  try {
    const clientUrl = distUrl('src/qmp/client.js');
    const script = `import(${JSON.stringify(clientUrl)}).then(({ QmpClient }) => QmpClient.connect(${JSON.stringify(path)})).then(() => console.log('CONNECTED'), (e) => console.log(e.message))`;
    const r = spawnSync(process.execPath, ['-e', script], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      timeout: 10_000,
    });
    assert.is(r.stdout.trim(), `permission denied on ${path} (the control socket is only for the user running xenkvm)`);
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('executeOnce connects, runs one command and leaves', () =>
  withServer(async (path) => {
    assert.equal(await executeOnce(path, 'add', { a: 0.5, b: 0.25 }), { sum: 0.75 });
  }));

test('ctl: people get a status line and an aligned port table', () =>
  withServer(async (path) => {
    assert.equal(await ctl({ socket: path, command: 'query-status' }), {
      code: 0,
      out: 'VM status: running\n',
      err: '',
    });
    const t = await ctl({ socket: path, command: 'xen-event-list' });
    assert.is(t.code, 0);
    assert.is(
      t.out,
      [
        'PORT  TYPE         VCPU  BINDING            PENDING  MASKED',
        '   1  virq            0  VIRQ_TIMER (0)     no       no',
        '   2  virq            1  VIRQ_TIMER (0)     yes      no',
        '  12  interdomain     3  dom 32752 port 13  no       yes',
        '  13  ipi             0  -                  no       no',
        '',
      ].join('\n'),
    );
    assert.equal(await ctl({ socket: path, command: 'add', json: '{"a": 1, "b": 2}' }), {
      code: 0,
      out: '{\n  "sum": 3\n}\n',
      err: '',
    });
    assert.equal(await ctl({ socket: path, command: 'stop' }), { code: 0, out: '{}\n', err: '' });
    assert.equal(await ctl({ socket: path, command: 'query-status' }), {
      code: 0,
      out: 'VM status: paused\n',
      err: '',
    });
  }));

test('ctl --json prints the raw return value', () =>
  withServer(async (path) => {
    const r = await ctl({ socket: path, command: 'query-status', raw: true });
    assert.equal(r, { code: 0, out: '{"status":"running","running":true}\n', err: '' });
    const l = await ctl({ socket: path, command: 'xen-event-list', raw: true });
    assert.is((JSON.parse(l.out) as unknown[]).length, PORTS.length);
  }));

test('ctl exit statuses: 1 for an error reply, 2 for usage and connection problems', () =>
  withServer(async (path, dir) => {
    assert.equal(await ctl({ socket: path, command: 'frobnicate' }), {
      code: 1,
      out: '',
      err: 'xenkvm: frobnicate: The command frobnicate has not been found\n',
    });
    assert.equal(await ctl({ socket: path, command: 'xen-event-inject', json: '{"port": "x"}' }), {
      code: 1,
      out: '',
      err: "xenkvm: xen-event-inject: Parameter 'port' expects integer\n",
    });
    const bad = await ctl({ socket: path, command: 'add', json: '{a: 1}' });
    assert.is(bad.code, 2);
    assert.match(bad.err, /^xenkvm: command arguments are not valid JSON: /);
    assert.equal(await ctl({ socket: path, command: 'add', json: '[1, 2]' }), {
      code: 2,
      out: '',
      err: 'xenkvm: command arguments must be a JSON object, e.g. \'{"port": 3}\'\n',
    });
    const gone = join(dir, 'nobody.sock');
    assert.equal(await ctl({ socket: gone, command: 'query-status' }), {
      code: 2,
      out: '',
      err: `xenkvm: no xenkvm is listening on ${gone}\n`,
    });
    const slow = await ctl({ socket: path, command: 'hang', timeoutMs: 30 });
    assert.equal(slow.code, 2);
    assert.match(slow.err, /no answer to 'hang'/);
  }));

test('ctl quit: the answer arrives before the machine goes', async () => {
  const { dir, cleanup } = tempDir('qmp');
  const quitting = deferred();
  const r = new CommandRegistry();
  registerMachineCommands(r, {
    status: () => 'running',
    pause: async () => {},
    resume: () => {},
    quit: () => quitting.resolve(),
    eventList: () => [],
    injectEvent: () => {},
  });
  const { server, path } = await startServer(dir, r);
  try {
    assert.equal(await ctl({ socket: path, command: 'quit' }), { code: 0, out: '{}\n', err: '' });
    await quitting.promise;
    assert.equal(await ctl({ socket: path, command: 'xen-event-list' }), {
      code: 0,
      out: 'no event channel ports are open\n',
      err: '',
    });
  } finally {
    await server.destroy();
    cleanup();
  }
});

test.run();
