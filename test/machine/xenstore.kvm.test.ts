// xenstore in a running machine: the test guest's `xenstore` program over
// its ring (every request and error, quotas, ring errors), a watch that
// lives through a snapshot and a restore in a new process and through a
// live migration, the toolstack commands of `xenkvm ctl`, the PV shutdown
// protocol ending a run, inspect and diff of the section, and a guest from
// an older snapshot that has no xenstore.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { basename, join } from 'node:path';
import { ctlCommand } from '../../src/cli/ctl.js';
import { startControlSocket } from '../../src/cli/control-socket.js';
import { diffCommand } from '../../src/cli/diff.js';
import { inspectCommand } from '../../src/cli/inspect.js';
import { saveSnapshot, restoreSnapshot } from '../../src/migrate/snapshot/save.js';
import { connectTo, parseAddress } from '../../src/migrate/live/transport/address.js';
import { migrate } from '../../src/migrate/live/send.js';
import { bootGuest, runGuest } from '../helpers/guest.js';
import { BIN } from '../helpers/cli.js';
import { GUEST_ELF } from '../helpers/paths.js';
import { goldenRunnableHere } from '../helpers/golden.js';
import { startReceiver } from '../helpers/receiver.js';
import { withTimeout } from '../helpers/async.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { tempDir } from '../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip xenstore: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('xenstore');
test.after(cleanup);

interface Ctl {
  status: number;
  out: string;
  err: string;
}

/** `xenkvm ctl SOCK cmd words...`, in process; retried while nothing listens yet (a process starting). */
async function ctl(socket: string, command: string, words: string[] = [], raw = false, waitMs = 15000): Promise<Ctl> {
  const end = Date.now() + waitMs;
  for (;;) {
    let out = '';
    let err = '';
    const status = await ctlCommand({
      socket,
      command,
      words,
      raw,
      out: (t) => void (out += t),
      err: (t) => void (err += t),
    });
    if (status !== 2 || Date.now() > end) return { status, out, err };
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Proc {
  child: ChildProcess;
  out(): string;
  err(): string;
  exit: Promise<number | null>;
}

function xenkvm(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const reap = (): void => void child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('close', () => process.off('exit', reap));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

async function waitForOutput(p: Proc, text: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!p.out().includes(text)) {
    if (Date.now() > end) throw new Error(`no "${text}" in ${ms} ms:\n${p.out().slice(-2000)}\n${p.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function assertPassed(out: string, what: string): void {
  assert.ok(out.includes('RESULT: PASS'), `${what} did not pass:\n${out.slice(-3000)}`);
  assert.not.match(out, /^not ok/m, what);
}

kvmTest('the xenstore program: every request and error a guest can reach, quotas, ring errors: PASS', async () => {
  const r = await runGuest('xenstore', { ms: 90_000 });
  assertPassed(r.console, 'xenstore');
  assert.equal(r.outcome, { kind: 'shutdown', reason: 'poweroff' });
  assert.match(r.console, /ok - 10000 watches: 128 accepted, then E2BIG/);
  assert.match(r.console, /ok - a conflicting commit: EAGAIN/);
});

kvmTest(
  'a watch registered before a snapshot fires after the restore in a new process, when the toolstack writes the node; inspect and diff show the state',
  async () => {
    const g = bootGuest('xenstore wait');
    const before = join(dir, 'before.xks');
    const after = join(dir, 'after.xks');
    try {
      await g.waitFor('xenstore: waiting for data/resume', 60_000);
      await g.machine.pause();
      await saveSnapshot(g.machine, before);
      g.machine.xenstoreToolstack!.write('data/marker', 'x');
      await saveSnapshot(g.machine, after);
    } finally {
      await g.machine.destroy();
    }
    const inspect = await capture((o) => inspectCommand({ file: before, section: 'xenstore', ...o }));
    assert.is(inspect.status, 0, inspect.err);
    assert.match(inspect.out, /^ {2}dom 1: \/local\/domain\/1\/data\/resume token "resume" \(relative\)$/m);
    assert.match(inspect.out, /^ {2}\/local\/domain\/1\/name = "guest\.elf"$/m);
    const diff = await capture((o) => diffCommand({ a: before, b: after, ...o }));
    assert.is(diff.status, 1, diff.err);
    assert.match(diff.out, /^xenstore\.node\.\/local\/domain\/1\/data\/marker: \(absent\) → "x"$/m);

    const sock = join(dir, 'restored.sock');
    const p = xenkvm(['restore', before, '--qmp', sock]);
    try {
      const w = await ctl(sock, 'xenstore-write', ['data/resume', 'go']);
      assert.is(w.status, 0, w.err);
      assert.is(await withTimeout(p.exit, 30_000, 'restored run'), 0, p.err() + p.out().slice(-2000));
    } finally {
      p.child.kill('SIGKILL');
    }
    assertPassed(g.console() + p.out(), 'restored xenstore');
    assert.match(p.out(), /ok - the watch fires after the toolstack writes data\/resume/);
  },
);

kvmTest('the same watch fires on the destination of a live migration', async () => {
  const g = bootGuest('xenstore wait');
  const sock = join(dir, 'dest.sock');
  const r = startReceiver({ qmp: sock });
  try {
    await g.waitFor('xenstore: waiting for data/resume', 60_000);
    const conn = await connectTo(parseAddress(await withTimeout(r.address, 10_000, 'receiver listening'), 'test'));
    await migrate(g.machine, conn);
    await g.machine.destroy();
    const w = await ctl(sock, 'xenstore-write', ['data/resume', 'go']);
    assert.is(w.status, 0, w.err);
    assert.is(await withTimeout(r.exit, 30_000, 'destination run'), 0, r.err() + r.out().slice(-2000));
    assertPassed(g.console() + r.out(), 'migrated xenstore');
  } finally {
    r.child.kill('SIGKILL');
    await g.machine.destroy();
  }
});

kvmTest('ctl xenstore-read/write/ls/rm/watch as the toolstack, words or JSON, --json, errors', async () => {
  const g = bootGuest('xenstore shutdown');
  const sock = join(dir, 'ctl.sock');
  const server = await startControlSocket(g.machine, sock);
  try {
    await g.waitFor('xenstore: watching control/shutdown', 30_000);
    assert.equal(await ctl(sock, 'xenstore-read', ['name']), { status: 0, out: 'guest.elf\n', err: '' });
    assert.equal(await ctl(sock, 'xenstore-read', ['control/feature-poweroff']), { status: 0, out: '1\n', err: '' });
    assert.equal(await ctl(sock, 'xenstore-write', ['data/a/b', 'hello world']), { status: 0, out: '', err: '' });
    const j = await ctl(sock, 'xenstore-read', ['{"path": "/local/domain/1/data/a/b"}'], true);
    assert.equal(JSON.parse(j.out), { value: 'hello world' });
    const ls = await ctl(sock, 'xenstore-ls', ['data']);
    assert.is(ls.status, 0, ls.err);
    assert.equal(ls.out.split('\n').filter(Boolean), [
      '/local/domain/1/data = ""  (n1)',
      '/local/domain/1/data/a = ""',
      '/local/domain/1/data/a/b = "hello world"',
    ]);
    const lsj = JSON.parse((await ctl(sock, 'xenstore-ls', ['/local/domain/1/domid'], true)).out);
    assert.equal(lsj, [{ path: '/local/domain/1/domid', value: '1', perms: ['n0', 'r1'] }]);

    // A watch: the event at once, then one per change, ended by its count.
    const watching = ctl(sock, 'xenstore-watch', ['data/w', '3']);
    await new Promise((r) => setTimeout(r, 300));
    await ctl(sock, 'xenstore-write', ['data/w', '1']);
    await ctl(sock, 'xenstore-write', ['data/w/x', '2']);
    const w = await withTimeout(watching, 10_000, 'xenstore-watch');
    assert.equal(w, {
      status: 0,
      out: '/local/domain/1/data/w\n/local/domain/1/data/w\n/local/domain/1/data/w/x\n',
      err: '',
    });

    assert.equal(await ctl(sock, 'xenstore-rm', ['data/a']), { status: 0, out: '', err: '' });
    const gone = await ctl(sock, 'xenstore-read', ['data/a/b']);
    assert.equal(gone, { status: 1, out: '', err: 'xenkvm: xenstore-read: /local/domain/1/data/a/b: ENOENT\n' });
    const usage = await ctl(sock, 'xenstore-write', ['data/a']);
    assert.is(usage.status, 2);
    assert.match(usage.err, /usage: xenstore-write PATH VALUE/);
    const bad = await ctl(sock, 'xenstore-read', ['bad path']);
    assert.match(bad.err, /EINVAL/);
    assert.is(g.machine.xenstore.internalError, null);
  } finally {
    await server.close();
    await g.machine.destroy();
  }
});

kvmTest('ctl shutdown and ctl reboot reach a guest watching control/shutdown: the run ends 0 and 3', async () => {
  for (const [cmd, code, said] of [
    ['shutdown', 0, 'poweroff'],
    ['reboot', 3, 'reboot'],
  ] as const) {
    const sock = join(dir, `${cmd}.sock`);
    const p = xenkvm(['run', GUEST_ELF, '--cmdline', 'xenstore shutdown', '--qmp', sock]);
    try {
      await waitForOutput(p, 'xenstore: watching control/shutdown', 30_000);
      const r = await ctl(sock, cmd);
      assert.equal(r, { status: 0, out: '', err: '' });
      assert.is(await withTimeout(p.exit, 20_000, cmd), code, p.err());
      assert.match(p.out(), new RegExp(`xenstore: control/shutdown says ${said}`));
    } finally {
      p.child.kill('SIGKILL');
    }
  }
});

kvmTest('a guest restored from an older snapshot has no xenstore: ctl says so, the machine runs on', async () => {
  const { runnable } = await goldenRunnableHere();
  const file = runnable[0];
  if (!file) {
    console.log('  skip: no golden snapshot runs on this CPU');
    return;
  }
  const m = await restoreSnapshot(file, { console: () => {}, log: () => {} });
  const sock = join(dir, 'old.sock');
  const server = await startControlSocket(m, sock);
  try {
    m.start();
    assert.is(m.xenstoreToolstack, null, basename(file));
    const r = await ctl(sock, 'xenstore-read', ['name']);
    assert.is(r.status, 1);
    assert.match(r.err, /has no xenstore/);
    assert.is((await ctl(sock, 'shutdown')).status, 1);
  } finally {
    await server.close();
    await m.destroy();
  }
});

async function capture(
  f: (o: { out: (t: string) => void; err: (t: string) => void; color: false }) => Promise<number>,
): Promise<Ctl> {
  let out = '';
  let err = '';
  const status = await f({ out: (t) => void (out += t), err: (t) => void (err += t), color: false });
  return { status, out, err };
}

test.run();
