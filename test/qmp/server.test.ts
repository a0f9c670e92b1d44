// The control socket's protocol and robustness, over real unix sockets:
// greeting, negotiation, the reply shapes, hostile input, many clients,
// disconnects, events, and the socket file's permissions and lifecycle.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { InputError, IoError } from '../../src/errors.js';
import { CommandRegistry } from '../../src/qmp/registry.js';
import { QmpServer } from '../../src/qmp/server.js';
import { arg } from '../../src/qmp/schema.js';
import { RawConn, startServer } from '../helpers/qmp.js';
import { tempDir } from '../helpers/tmp.js';
import { deferred } from '../helpers/async.js';
import { repoPath } from '../helpers/paths.js';

const pkgVersion = (JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string }).version;

/** A registry with a few test commands besides the built-in ones. */
function testRegistry(): CommandRegistry {
  const r = new CommandRegistry();
  r.register({
    name: 'echo',
    args: { text: arg.string(), times: arg.optional(arg.integer({ min: 1, max: 3 })) },
    handler: ({ text, times }) => ({ text: text.repeat(times ?? 1) }),
  });
  r.register({
    name: 'fail-ours',
    args: {},
    handler: () => {
      throw new InputError('the guest has no such thing');
    },
  });
  r.register({
    name: 'fail-bug',
    args: {},
    handler: () => {
      throw new TypeError('x is undefined');
    },
  });
  r.register({ name: 'fail-json', args: {}, handler: () => ({ n: 1n }) as never });
  return r;
}

async function withServer(
  fn: (ctx: { path: string; server: QmpServer; errors: string[]; dir: string }) => Promise<void>,
  registry = testRegistry(),
): Promise<void> {
  const { dir, cleanup } = tempDir('qmp');
  const { server, path, errors } = await startServer(dir, registry);
  try {
    await fn({ path, server, errors, dir });
  } finally {
    await server.destroy();
    cleanup();
  }
}

test('greets with the package version and no capabilities', () =>
  withServer(async ({ path }) => {
    const c = await RawConn.open(path);
    assert.equal(await c.next(), { QMP: { version: { xenkvm: pkgVersion }, capabilities: [] } });
    c.destroy();
  }));

test('commands are refused until qmp_capabilities, which is refused after', () =>
  withServer(async ({ path }) => {
    const c = await RawConn.open(path);
    await c.next();
    assert.equal(await c.call('query-commands', undefined, 'a'), {
      error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" },
      id: 'a',
    });
    assert.equal(await c.call('qmp_capabilities', { enable: ['oob'] }, 1), {
      error: { class: 'GenericError', desc: "Capability 'oob' not available" },
      id: 1,
    });
    assert.equal(await c.call('qmp_capabilities', undefined, 2), { return: {}, id: 2 });
    assert.equal(await c.call('qmp_capabilities', undefined, 3), {
      error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' },
      id: 3,
    });
    assert.equal(await c.call('echo', { text: 'hi', times: 2 }, { any: ['json'] }), {
      return: { text: 'hihi' },
      id: { any: ['json'] },
    });
    c.destroy();
  }));

test('query-commands lists every ordinary command, sorted', () =>
  withServer(async ({ path }) => {
    const c = await RawConn.ready(path);
    const r = await c.call('query-commands');
    assert.equal(r, {
      return: ['echo', 'fail-bug', 'fail-json', 'fail-ours', 'query-commands'].map((name) => ({ name })),
    });
    c.destroy();
  }));

test('malformed requests get error replies and the session keeps serving', () =>
  withServer(async ({ path }) => {
    const c = await RawConn.ready(path);
    const cases: Array<[string, RegExp, unknown?]> = [
      ['{"execute": "echo", \n', /^JSON parse error: /],
      ['not json at all\n', /^JSON parse error: /],
      ['[1, 2]\n', /^QMP input must be a JSON object$/],
      ['"execute"\n', /^QMP input must be a JSON object$/],
      ['{"id": 5}\n', /^QMP input lacks member 'execute'$/, 5],
      ['{"execute": 42, "id": 6}\n', /^QMP input member 'execute' must be a string$/, 6],
      ['{"execute": "echo", "arguments": [1], "id": 7}\n', /^QMP input member 'arguments' must be an object$/, 7],
      ['{"execute": "echo", "exec-oob": 1, "id": 8}\n', /^QMP input member 'exec-oob' is unexpected$/, 8],
      ['{"execute": "echo", "arguments": {}, "id": 9}\n', /^Parameter 'text' is missing$/, 9],
      ['{"execute": "echo", "arguments": {"text": 1}}\n', /^Parameter 'text' expects string$/],
      ['{"execute": "echo", "arguments": {"text": "a", "times": 9}}\n', /^Parameter 'times' must be in 1\.\.3$/],
      [
        '{"execute": "echo", "arguments": {"text": "a", "__proto__": {"x": 1}}}\n',
        /^Parameter '__proto__' is unexpected$/,
      ],
      [`${'['.repeat(200000)}\n`, /^JSON parse error: /],
      ['{"execute": "fail-ours", "id": "o"}\n', /^the guest has no such thing$/, 'o'],
      ['{"execute": "fail-bug"}\n', /^internal error: x is undefined$/],
      ['{"execute": "fail-json"}\n', /^internal error: .*BigInt/],
    ];
    for (const [line, desc, id] of cases) {
      c.send(line);
      const r = await c.next();
      const err = r['error'] as { class: string; desc: string } | undefined;
      assert.ok(err, `error reply for ${line.slice(0, 60)}: ${JSON.stringify(r)}`);
      assert.is(err.class, 'GenericError');
      assert.match(err.desc, desc);
      assert.not.match(err.desc, /\n\s+at /, 'no stack trace');
      assert.is(r['id'], id);
    }
    assert.equal(await c.call('no-such-command', undefined, 1), {
      error: { class: 'CommandNotFound', desc: 'The command no-such-command has not been found' },
      id: 1,
    });
    // Blank lines and CRLF are tolerated.
    c.send('\n  \r\n{"execute": "echo", "arguments": {"text": "ok"}}\r\n');
    assert.equal(await c.next(), { return: { text: 'ok' } });
    c.destroy();
  }));

test('an over-long line is discarded with one error reply, then serving goes on', async () => {
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, testRegistry(), { limits: { maxLineBytes: 1024 } });
  try {
    const c = await RawConn.ready(path);
    // 4 MiB without a newline, in many chunks: the server must not buffer it.
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 64; i++) c.send(chunk);
    c.send('\n{"execute": "echo", "arguments": {"text": "after"}, "id": 2}\n');
    const r = await c.next();
    assert.equal(r, {
      error: { class: 'GenericError', desc: 'request line too long (4194304 bytes; the limit is 1024)' },
    });
    assert.equal(await c.next(), { return: { text: 'after' }, id: 2 });
    // A line of exactly the limit is fine.
    const body = '{"execute": "echo", "arguments": {"text": "';
    const fill = 1024 - body.length - 3;
    c.send(`${body}${'y'.repeat(fill)}"}}\n`);
    assert.equal(((await c.next())['return'] as { text: string }).text.length, fill);
    c.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('pipelined requests are answered in order; a half-closed client still gets its replies', () =>
  withServer(async ({ path }) => {
    const c = await RawConn.ready(path);
    let batch = '';
    for (let i = 0; i < 200; i++)
      batch += `${JSON.stringify({ execute: 'echo', arguments: { text: `m${i}` }, id: i })}\n`;
    c.send(batch);
    c.socket.end();
    for (let i = 0; i < 200; i++) assert.equal(await c.next(), { return: { text: `m${i}` }, id: i });
    await c.closed;
  }));

test('many clients at once; a slow command does not hold up the others', async () => {
  const gate = deferred();
  const registry = testRegistry();
  registry.register({
    name: 'slow',
    args: {},
    handler: async () => {
      await gate.promise;
      return { slow: true };
    },
  });
  await withServer(async ({ path, server }) => {
    const slow = await RawConn.ready(path);
    slow.send({ execute: 'slow', id: 's' });
    const clients = await Promise.all(Array.from({ length: 12 }, () => RawConn.ready(path)));
    assert.is(server.clientCount, 13);
    await Promise.all(
      clients.map(async (c, n) => {
        for (let i = 0; i < 25; i++) {
          assert.equal(await c.call('echo', { text: `${n}.${i}` }, i), { return: { text: `${n}.${i}` }, id: i });
        }
      }),
    );
    gate.resolve();
    assert.equal(await slow.next(), { return: { slow: true }, id: 's' });
    for (const c of [slow, ...clients]) c.destroy();
  }, registry);
});

test('a client vanishing mid-command: the reply goes nowhere, quietly, and the server keeps serving', async () => {
  const gate = deferred();
  const started = deferred();
  const registry = testRegistry();
  registry.register({
    name: 'wait',
    args: {},
    handler: async () => {
      started.resolve();
      await gate.promise;
      return { done: true };
    },
  });
  await withServer(async ({ path, server, errors }) => {
    const c = await RawConn.ready(path);
    c.send({ execute: 'wait' });
    await started.promise;
    c.destroy();
    await c.closed;
    // EOF alone cannot tell a vanished client from a half-closed one, so the
    // handler finishes; writing its reply then fails and ends the session.
    gate.resolve();
    for (let i = 0; i < 50 && server.clientCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(server.clientCount, 0);
    assert.equal(errors, []);
    const d = await RawConn.ready(path);
    assert.equal(await d.call('echo', { text: 'still here' }), { return: { text: 'still here' } });
    d.destroy();
  }, registry);
});

test('destroy() aborts the signal of running commands and does not wait for them', async () => {
  const started = deferred();
  let reason: unknown;
  const registry = testRegistry();
  registry.register({
    name: 'forever',
    args: {},
    handler: (_a, ctx) =>
      new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => {
          reason = ctx.signal.reason;
          reject(ctx.signal.reason);
        });
        started.resolve();
      }),
  });
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, registry);
  try {
    const c = await RawConn.ready(path);
    c.send({ execute: 'forever' });
    await started.promise;
    await server.destroy();
    await c.closed;
    assert.match(String(reason), /client disconnected/);
    assert.not.ok(existsSync(path));
  } finally {
    cleanup();
  }
});

test('events go to every negotiated client, with a timestamp', () =>
  withServer(async ({ path, server }) => {
    const a = await RawConn.ready(path);
    const b = await RawConn.ready(path);
    const fresh = await RawConn.open(path);
    await fresh.next();
    const before = Date.now() / 1000;
    server.emitEvent('STOP');
    server.emitEvent('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
    for (const c of [a, b]) {
      const stop = await c.next();
      assert.is(stop['event'], 'STOP');
      assert.equal(stop['data'], {});
      const ts = stop['timestamp'] as { seconds: number; microseconds: number };
      assert.ok(
        Number.isInteger(ts.seconds) &&
          Number.isInteger(ts.microseconds) &&
          ts.microseconds >= 0 &&
          ts.microseconds < 1e6,
      );
      assert.ok(Math.abs(ts.seconds + ts.microseconds / 1e6 - before) < 5);
      const shut = await c.next();
      assert.equal([shut['event'], shut['data']], ['SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }]);
    }
    // Still negotiating: no events; its first message is the answer to its first command.
    assert.equal(await fresh.call('qmp_capabilities', undefined, 1), { return: {}, id: 1 });
    for (const c of [a, b, fresh]) c.destroy();
  }));

test('clients past the limit are told so and disconnected', async () => {
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, testRegistry(), { limits: { maxClients: 2 } });
  try {
    const a = await RawConn.ready(path);
    const b = await RawConn.ready(path);
    const c = await RawConn.open(path);
    assert.equal(await c.next(), {
      error: { class: 'GenericError', desc: 'too many clients (at most 2); try again later' },
    });
    await c.closed;
    a.destroy();
    await a.closed;
    await new Promise((r) => setTimeout(r, 20));
    const d = await RawConn.ready(path);
    for (const x of [b, d]) x.destroy();
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('afterReply runs once the reply is out, and may close the server', async () => {
  let server!: QmpServer;
  const order: string[] = [];
  const registry = testRegistry();
  registry.register({
    name: 'bye',
    args: {},
    handler: (_a, ctx) => {
      ctx.afterReply(async () => {
        order.push('hook');
        await server.close();
        order.push('closed');
      });
      order.push('handler');
    },
  });
  const { dir, cleanup } = tempDir('qmp');
  try {
    ({ server } = await startServer(dir, registry));
    const c = await RawConn.ready(server.path);
    assert.equal(await c.call('bye', undefined, 1), { return: {}, id: 1 });
    await c.closed;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(order, ['handler', 'hook', 'closed']);
    assert.not.ok(existsSync(server.path), 'socket removed');
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('close() lets a running command answer, then disconnects and removes the socket', async () => {
  const gate = deferred();
  const started = deferred();
  const registry = testRegistry();
  registry.register({
    name: 'slow',
    args: {},
    handler: async () => {
      started.resolve();
      await gate.promise;
      return 7;
    },
  });
  const { dir, cleanup } = tempDir('qmp');
  const { server, path } = await startServer(dir, registry);
  try {
    const c = await RawConn.ready(path);
    c.send({ execute: 'slow', id: 1 });
    await started.promise;
    const closing = server.close();
    assert.is(server.close(), closing, 'idempotent');
    gate.resolve();
    assert.equal(await c.next(), { return: 7, id: 1 });
    await closing;
    await c.closed;
    assert.not.ok(existsSync(path));
    await RawConn.open(path).then(
      () => assert.unreachable('connected after close'),
      (e: NodeJS.ErrnoException) => assert.is(e.code, 'ENOENT'),
    );
  } finally {
    await server.destroy();
    cleanup();
  }
});

test('the socket is mode 0600, and the path given relative is made absolute', () =>
  withServer(async ({ path, server }) => {
    const st = lstatSync(path);
    assert.ok(st.isSocket());
    assert.is(st.mode & 0o7777, 0o600);
    assert.is(st.uid, process.getuid!());
    assert.is(server.path, path);
    assert.equal(readdirSync(join(path, '..')), ['qmp.sock'], 'no temporary directory left behind');
  }));

test('a stale socket from a dead process is replaced', async () => {
  const { dir, cleanup } = tempDir('qmp');
  try {
    const path = join(dir, 'qmp.sock');
    // A socket file nobody listens on: bind elsewhere, link it in, close (libuv unlinks only its own name).
    const old = createServer();
    await new Promise<void>((r) => old.listen(join(dir, 'old'), r));
    linkSync(join(dir, 'old'), path);
    await new Promise((r) => old.close(r));
    assert.ok(lstatSync(path).isSocket());
    const { server } = await startServer(dir);
    const c = await RawConn.ready(path);
    c.destroy();
    await server.close();
  } finally {
    cleanup();
  }
});

test('a live socket, a regular file, a directory or a symlink in the way are refused and left alone', async () => {
  const { dir, cleanup } = tempDir('qmp');
  try {
    const { server, path } = await startServer(dir);
    await QmpServer.listen({ path, registry: new CommandRegistry() }).then(
      () => assert.unreachable(),
      (e) => {
        assert.instance(e, InputError);
        assert.match((e as Error).message, /another process is already listening on .*qmp\.sock$/);
      },
    );
    const c = await RawConn.ready(path); // the first server is unharmed
    c.destroy();
    await server.close();

    const file = join(dir, 'file');
    writeFileSync(file, 'precious');
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    const link = join(dir, 'link');
    symlinkSync(file, link);
    for (const p of [file, sub, link]) {
      await QmpServer.listen({ path: p, registry: new CommandRegistry() }).then(
        () => assert.unreachable(),
        (e) => assert.match((e as Error).message, /exists and is not a socket; refusing to replace it$/),
      );
    }
    assert.is(readFileSync(file, 'utf8'), 'precious');
    assert.ok(lstatSync(link).isSymbolicLink());
  } finally {
    cleanup();
  }
});

test('unsafe or impossible places are refused with a clear message', async () => {
  const { dir, cleanup } = tempDir('qmp');
  try {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const sticky = join(dir, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const bad: Array<[string, RegExp]> = [
      [join(open, 's'), /other users can write to the directory \(mode 777\)/],
      [join(dir, 'missing', 's'), /cannot create a control socket in .*missing: .*ENOENT/],
      [join(dir, 'x'.repeat(120)), /is too long \(\d+ bytes; a unix socket path holds at most 107\)/],
    ];
    for (const [p, re] of bad) {
      await QmpServer.listen({ path: p, registry: new CommandRegistry() }).then(
        () => assert.unreachable(p),
        (e) => {
          assert.instance(e, InputError);
          assert.match((e as Error).message, re);
        },
      );
    }
    // World-writable with the sticky bit (like /tmp) is fine.
    const s = await QmpServer.listen({ path: join(sticky, 's'), registry: new CommandRegistry() });
    assert.is(statSync(join(sticky, 's')).mode & 0o777, 0o600);
    await s.close();
  } finally {
    cleanup();
  }
});

test('close() leaves alone a file that replaced the socket', async () => {
  const { dir, cleanup } = tempDir('qmp');
  try {
    const { server, path } = await startServer(dir);
    unlinkSync(path);
    writeFileSync(path, 'someone else');
    await server.close();
    assert.is(readFileSync(path, 'utf8'), 'someone else');
  } finally {
    cleanup();
  }
});

test('listen errors are IoErrors or InputErrors, never raw', async () => {
  const { dir, cleanup } = tempDir('qmp');
  try {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    // Root ignores directory permissions; then the listen simply works.
    try {
      const s = await QmpServer.listen({ path: join(ro, 's'), registry: new CommandRegistry() });
      assert.is(process.getuid!(), 0);
      await s.close();
    } catch (e) {
      assert.ok(e instanceof IoError || e instanceof InputError, String(e));
    }
  } finally {
    cleanup();
  }
});

test.run();
