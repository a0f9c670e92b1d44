// The PV console end to end, with the test guest's `console` program (both
// directions, wrap-around, a burst larger than the ring): input from the
// run's stdin; `xenkvm console` attached over the control socket to a
// running guest, to a restored one (with input typed while it was paused
// travelling in the snapshot) and to a migrated one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkipReason } from '../helpers/kvm.js';
import { GUEST_ELF } from '../helpers/paths.js';
import { startXenkvm, type XenkvmProcess } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';
import { withTimeout } from '../helpers/async.js';
import { xenkvmSync } from '../helpers/cli.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip console: ${skip}`);
const kvmTest = skip ? test.skip : test;

const INPUT = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
const { dir, cleanup } = tempDir('console');
const p = (n: string) => join(dir, n);
const alive: XenkvmProcess[] = [];
const start = (args: string[], opts?: { stdin?: 'pipe' | 'ignore' }) => {
  const x = startXenkvm(args, opts);
  alive.push(x);
  return x;
};
test.after.each(() => {
  for (const x of alive.splice(0)) x.child.kill('SIGKILL');
});
test.after(() => cleanup());

/** Resolves once `path` exists (a control socket is opened after the guest starts). */
async function socketUp(path: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The burst's 120 lines, whole and in order, with nothing between them. */
function assertBurst(out: string): void {
  const lines = out.split('\n').filter((l) => l.startsWith('burst '));
  assert.is(lines.length, 120, out.slice(-500));
  const first = out.indexOf('burst 000');
  const block = lines.map((l) => `${l}\n`).join('');
  assert.is(out.slice(first, first + block.length), block, 'the burst is contiguous');
  lines.forEach((l, i) => assert.ok(l.startsWith(`burst ${String(i).padStart(3, '0')} the quick`), l));
}

kvmTest('run console: stdin reaches the guest through the ring, output wraps it, RESULT: PASS', async () => {
  const g = start(['run', GUEST_ELF, '--cmdline', 'console']);
  g.write(INPUT);
  assert.is(await withTimeout(g.exit, 60_000, 'console guest'), 0, g.err());
  const out = g.out();
  assertBurst(out);
  assert.match(out, /console: hello through the ring\n/);
  assert.match(out, /ok - 3000 bytes of input through the 1024-byte ring, 0 wrong/);
  assert.match(out, /console: read 3000 bytes, starting abcdefghijklmnopqrst/);
  assert.match(out, /RESULT: PASS/);
});

/** Attaches `xenkvm console` to `sock`, checks it replays the log, types the input, waits for the answer. */
async function attachAndType(sock: string): Promise<XenkvmProcess> {
  await socketUp(sock);
  const c = start(['console', sock]);
  await c.waitFor('ok - burst of 9840 bytes', 15_000);
  assertBurst(c.out());
  c.write(INPUT);
  await c.waitFor('console: read 3000 bytes, starting abcdefghijklmnopqrst', 30_000);
  return c;
}

kvmTest('xenkvm console on a running guest: the log first, then live output; input forwarded', async () => {
  const sock = p('run.sock');
  const g = start(['run', GUEST_ELF, '--cmdline', 'console', '--qmp', sock], { stdin: 'ignore' });
  await g.waitFor('ok - burst of 9840 bytes', 20_000);
  const c = await attachAndType(sock);
  assert.is(await withTimeout(g.exit, 30_000, 'guest'), 0, g.err());
  assert.is(await withTimeout(c.exit, 10_000, 'console client'), 0, c.err());
  assert.match(c.err(), /closed: the guest stopped or moved/);
  assert.match(g.out(), /RESULT: PASS/);
});

kvmTest('xenkvm console on a restored guest: input typed while paused travels in the snapshot', async () => {
  const sock = p('a.sock');
  const file = p('console.xks');
  const g = start(['run', GUEST_ELF, '--cmdline', 'console', '--qmp', sock], { stdin: 'ignore' });
  await g.waitFor('ok - burst of 9840 bytes', 20_000);
  assert.is(xenkvmSync(['ctl', sock, 'stop']).status, 0);
  const half = Buffer.from(INPUT.slice(0, 1500)).toString('base64');
  const w = xenkvmSync(['ctl', sock, 'console-write', JSON.stringify({ data: half }), '--json']);
  assert.is(w.status, 0, w.stderr);
  assert.equal(JSON.parse(w.stdout), { accepted: 1500 });
  const snap = xenkvmSync(['snapshot', '--qmp', sock, '-o', file, '--stop']);
  assert.is(snap.status, 0, snap.stderr);
  const inspect = xenkvmSync(['inspect', file, '-s', 'xen_console']);
  assert.match(inspect.stdout, /input waiting for the guest: 1500 bytes: "abcdef/);
  xenkvmSync(['ctl', sock, 'quit']);
  await withTimeout(g.exit, 10_000, 'source quit');
  const sock2 = p('b.sock');
  const r = start(['restore', file, '--qmp', sock2], { stdin: 'ignore' });
  await socketUp(sock2);
  const c = start(['console', sock2]);
  await c.waitFor('ok - burst of 9840 bytes', 20_000);
  c.write(INPUT.slice(1500));
  await c.waitFor('console: read 3000 bytes, starting abcdefghijklmnopqrst', 30_000);
  assert.is(await withTimeout(r.exit, 30_000, 'restored guest'), 0, r.err());
  assert.match(r.out(), /RESULT: PASS/);
});

kvmTest('xenkvm console on a guest migrated over loopback: attach to the destination socket', async () => {
  const src = p('src.sock');
  const dst = p('dst.sock');
  const g = start(['run', GUEST_ELF, '--cmdline', 'console', '--qmp', src], { stdin: 'ignore' });
  const recv = start(['receive', '--listen', 'tcp:127.0.0.1:0', '--qmp', dst], { stdin: 'ignore' });
  await recv.waitFor(/waiting for a guest on (\S+)/, 15_000, 'err');
  const addr = /waiting for a guest on (\S+)/.exec(recv.err())![1]!;
  await g.waitFor('ok - burst of 9840 bytes', 20_000);
  const m = xenkvmSync(['migrate', '--qmp', src, '--to', addr]);
  assert.is(m.status, 0, m.stderr);
  await withTimeout(g.exit, 15_000, 'source ends after the migration');
  await recv.waitFor('guest running', 15_000, 'err');
  await attachAndType(dst);
  assert.is(await withTimeout(recv.exit, 30_000, 'destination guest'), 0, recv.err());
  assert.match(recv.out(), /RESULT: PASS/);
});

test.run();
