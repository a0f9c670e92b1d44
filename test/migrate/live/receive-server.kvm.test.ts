// `xenkvm receive` as a server: a bad connection (garbage, a sender that
// stalls mid-record) is dropped with a line and the destination waits on; a
// second source while one is in progress is told so; a proper migration
// after all that runs the guest.  And a destination that acknowledges a
// round it was never sent makes the source give up at once, not after its
// confirmation timeout with the guest paused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, createServer, type Socket } from 'node:net';
import { connectTo, parseAddress } from '../../../src/migrate/live/transport/address.js';
import { migrate, MigrationError } from '../../../src/migrate/live/send.js';
import { STALL_MS } from '../../../src/migrate/live/receive.js';
import { withTimeout } from '../../helpers/async.js';
import { bootGuest } from '../../helpers/guest.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { startReceiver } from '../../helpers/receiver.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip receive-server: ${skip}`);
const kvmTest = skip ? test.skip : test;

function dial(address: string): Promise<Socket> {
  const m = /^tcp:(.*):(\d+)$/.exec(address)!;
  return new Promise((resolve, reject) => {
    const s = connect({ host: m[1]!, port: Number(m[2]) }, () => resolve(s));
    s.on('error', reject);
  });
}

/** What the peer says until it closes (at most `ms`). */
function replies(s: Socket, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    const done = (): void => resolve(text);
    s.on('close', done);
    setTimeout(done, ms).unref();
  });
}

const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

kvmTest('garbage, a stalled sender and a second source are turned away; the next proper source migrates', async () => {
  const r = startReceiver();
  let g: ReturnType<typeof bootGuest> | null = null;
  try {
    const address = await withTimeout(r.address, 10_000, 'receiver listening');

    // 1. Garbage: refused with ERR, and the destination waits on.
    const junk = await dial(address);
    const junkSaid = replies(junk, 5000);
    junk.end('GET / HTTP/1.0\r\n\r\n');
    assert.match(await junkSaid, /^ERR /, 'garbage gets an ERR');
    await until(() => /waiting for another connection/.test(r.err()), 5000, 'the destination to wait on');
    assert.is(r.child.exitCode, null, 'still listening after garbage');

    // 2. A sender that stops mid-record: nothing for STALL_MS, then dropped.
    const staller = await dial(address);
    const stallerSaid = replies(staller, STALL_MS + 8000);
    staller.write(Buffer.from('XKSNAP')); // a few bytes of a magic, then silence
    // 3. Meanwhile a second source is told that a migration is in progress.
    const second = await dial(address);
    assert.match(await replies(second, 5000), /^ERR a migration to this destination is already in progress/);
    const t0 = Date.now();
    assert.match(await stallerSaid, /ERR the source sent no complete record for \d+ s; dropped/);
    const took = Date.now() - t0;
    assert.ok(took < STALL_MS + 5000, `dropped after ${took} ms`);
    staller.destroy();
    await until(() => (r.err().match(/waiting for another connection/g) ?? []).length >= 2, 5000, 'waiting on again');

    // 4. A proper migration still goes through, and the guest runs clean there.
    g = bootGuest('soak 6s', { vcpus: 2 });
    await g.waitFor('soak: t=1s', 15_000);
    await migrate(g.machine, await connectTo(parseAddress(address, 'test')));
    await g.machine.destroy();
    assert.is(await withTimeout(r.exit, 30_000, 'destination run'), 0, r.err());
    assert.match(r.out(), /RESULT: PASS/);
    assert.not.match(r.out(), /VIOLATION/);
  } finally {
    r.child.kill('SIGKILL');
    await g?.machine.destroy();
  }
});

kvmTest('an ACK for a round never sent ends the migration at once and the source runs on', async () => {
  const server = createServer((s) => {
    s.resume();
    s.write('ACK 999\n');
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  const g = bootGuest('soak 8s', { vcpus: 1 });
  try {
    await g.waitFor('soak: t=1s', 15_000);
    const t0 = performance.now();
    const err = await migrate(g.machine, await connectTo(parseAddress(`tcp:127.0.0.1:${port}`, 'test'))).then(
      () => null,
      (e: unknown) => e,
    );
    const ms = performance.now() - t0;
    assert.instance(err, MigrationError);
    assert.match((err as Error).message, /out-of-turn ACK 999/);
    assert.ok(ms < 5000, `gave up after ${ms.toFixed(0)} ms, not at the confirmation timeout`);
    for (let i = 0; i < 100 && g.machine.status !== 'running'; i++) await new Promise((res) => setTimeout(res, 10));
    assert.is(g.machine.status, 'running', 'the source guest runs on');
  } finally {
    server.close();
    await g.machine.destroy();
  }
  assert.not.match(g.console(), /VIOLATION/);
});

test.run();
