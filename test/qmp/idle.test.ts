// Clients that hold a slot and do nothing: they must not lock `xenkvm ctl`
// out (issue 14, defect 9).  Real unix sockets; short limits so the test is quick.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandRegistry } from '../../src/qmp/registry.js';
import { RawConn, startServer } from '../helpers/qmp.js';
import { deferred } from '../helpers/async.js';
import { tempDir } from '../helpers/tmp.js';

function registry(hold?: Promise<void>): CommandRegistry {
  const r = new CommandRegistry();
  r.register({ name: 'ping', args: {}, handler: () => ({ pong: true }) });
  r.register({ name: 'hold', args: {}, handler: async () => (await hold, {}) });
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('clients that never negotiate are told and dropped, and a new client gets in', async () => {
  const { dir, cleanup } = tempDir();
  const { server, path } = await startServer(dir, registry(), {
    limits: { maxClients: 2, negotiationTimeoutMs: 150, evictIdleMs: 0 },
  });
  try {
    const silent = [await RawConn.open(path), await RawConn.open(path)];
    for (const c of silent) assert.ok('QMP' in (await c.next()), 'greeted');
    const early = await RawConn.open(path);
    assert.equal(await early.next(), {
      error: { class: 'GenericError', desc: 'too many clients (at most 2); try again later' },
    });
    for (const c of silent) {
      assert.equal(await c.next(1000), {
        error: { class: 'GenericError', desc: 'no capabilities negotiation within 150 ms of connecting; disconnected' },
      });
      await c.closed;
    }
    await sleep(20);
    const ctl = await RawConn.ready(path);
    assert.equal(await ctl.call('ping', undefined, 1), { return: { pong: true }, id: 1 });
    // Negotiated in time: the deadline no longer applies.
    await sleep(250);
    assert.equal(await ctl.call('ping', undefined, 2), { return: { pong: true }, id: 2 });
    ctl.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('with every slot taken, the client idle longest gives way to a new one', async () => {
  const { dir, cleanup } = tempDir();
  const { server, path } = await startServer(dir, registry(), {
    limits: { maxClients: 2, negotiationTimeoutMs: 0, evictIdleMs: 150 },
  });
  try {
    const oldest = await RawConn.ready(path);
    await sleep(30);
    const other = await RawConn.ready(path);
    // Idle, but not for long enough yet: a newcomer is refused as before.
    const early = await RawConn.open(path);
    assert.equal(await early.next(), {
      error: { class: 'GenericError', desc: 'too many clients (at most 2); try again later' },
    });
    await sleep(200);
    const ctl = await RawConn.ready(path);
    const told = await oldest.next(1000);
    assert.match(String((told['error'] as { desc: string }).desc), /^idle for \d+ s and every slot is taken/);
    await oldest.closed;
    assert.equal(await ctl.call('ping', undefined, 1), { return: { pong: true }, id: 1 });
    assert.equal(await other.call('ping', undefined, 2), { return: { pong: true }, id: 2 }, 'the other client stays');
    for (const c of [ctl, other]) c.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('a client whose command is still running keeps its slot', async () => {
  const { dir, cleanup } = tempDir();
  const release = deferred();
  const { server, path } = await startServer(dir, registry(release.promise), {
    limits: { maxClients: 1, negotiationTimeoutMs: 0, evictIdleMs: 50 },
  });
  try {
    const busy = await RawConn.ready(path);
    busy.send({ execute: 'hold', id: 7 });
    await sleep(120);
    const late = await RawConn.open(path);
    assert.equal(await late.next(), {
      error: { class: 'GenericError', desc: 'too many clients (at most 1); try again later' },
    });
    release.resolve();
    assert.equal(await busy.next(), { return: {}, id: 7 });
    busy.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
});

test.run();
