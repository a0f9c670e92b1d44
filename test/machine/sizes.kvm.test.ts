// Every guest size works: the soak guest (which checks its own memory,
// ticks and events) is run, snapshotted, restored in a new process and
// live-migrated over loopback at sizes on both sides of the 32-bit hole and
// of the 4 GiB typed-array limit.  Its memory region lands above 4 GiB from
// 16 GiB on (its heap is the largest RAM range).  Only touched memory costs
// the host anything, so 16 GiB is cheap; 64 GiB boots `hello`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BIN, xenkvmSync } from '../helpers/cli.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { GUEST_ELF } from '../helpers/paths.js';
import { startReceiver } from '../helpers/receiver.js';
import { tempDir } from '../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip sizes: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('sizes');
const SIZES = ['16M', '1G', '2G', '3G', '4G', '5G', '16G'];

interface Proc {
  kill(): void;
  text(): string;
  exit: Promise<number | null>;
  waitFor(pattern: RegExp, ms: number): Promise<void>;
}

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const waiters: Array<() => void> = [];
  const onData = (b: Buffer): void => {
    text += b.toString();
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  void exit.then(() => clearTimeout(killer));
  return {
    kill: () => void child.kill('SIGKILL'),
    text: () => text,
    exit,
    async waitFor(pattern, ms) {
      const end = Date.now() + ms;
      while (!pattern.test(text)) {
        if (Date.now() > end) throw new Error(`no ${pattern} in ${ms} ms:\n${text.slice(-2000)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
  };
}

/** The soak guest's verdict in `text`: PASS, no VIOLATION line. */
function clean(text: string, what: string): void {
  assert.not.match(text, /VIOLATION/, `${what}: ${text.slice(-1500)}`);
  assert.match(text, /RESULT: PASS/, `${what}: ${text.slice(-1500)}`);
}

for (const size of SIZES) {
  kvmTest(`${size}: run, snapshot, restore in a new process, live migration over loopback`, async () => {
    const sock = join(dir, `${size}.sock`);
    const file = join(dir, `${size}.xks`);
    const soak = ['run', GUEST_ELF, '--mem', size, '--vcpus', '2', '--cmdline', 'soak 5s mem=8'];

    const src = start([...soak, '--qmp', sock]);
    await src.waitFor(/soak: t=1s/, 30_000);
    const snap = xenkvmSync(['snapshot', '--qmp', sock, '-o', file]);
    assert.is(snap.status, 0, snap.stderr);
    assert.is(await src.exit, 0, src.text().slice(-1500));
    clean(src.text(), `${size} run`);

    const restored = xenkvmSync(['restore', file], 60_000);
    assert.is(restored.status, 0, restored.stderr);
    clean(restored.stdout, `${size} restore`);

    const dst = startReceiver();
    const address = await dst.address;
    // Round 0 reads every page: at 16 GiB that takes seconds here, and the guest must outlive it.
    const migSoak = size === '16G' ? soak.map((a) => (a === 'soak 5s mem=8' ? 'soak 20s mem=8' : a)) : soak;
    const mig = start([...migSoak, '--qmp', `${sock}2`]);
    try {
      await mig.waitFor(/soak: t=1s/, 30_000);
      const moved = xenkvmSync(['migrate', '--qmp', `${sock}2`, '--to', address], 60_000);
      assert.is(moved.status, 0, moved.stderr);
      assert.is(await mig.exit, 0, mig.text().slice(-1500));
      assert.is(await dst.exit, 0, dst.err());
      clean(dst.out(), `${size} migrated`);
    } finally {
      // A destination whose source failed waits for another; the test is over.
      dst.child.kill('SIGKILL');
      mig.kill();
    }
  });
}

kvmTest('64G: hello boots and passes', () => {
  const r = xenkvmSync(['run', GUEST_ELF, '--mem', '64G', '--cmdline', 'hello']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /RESULT: PASS/);
});

kvmTest('sizes outside 4 MiB..1 TiB, or not in 2 MiB steps, are one line and exit 2', () => {
  for (const size of ['2M', '17M', '2T']) {
    const r = xenkvmSync(['run', GUEST_ELF, '--mem', size, '--cmdline', 'hello']);
    assert.is(r.status, 2, `${size}: ${r.stderr}`);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^xenkvm: --mem /);
  }
});

test.after(cleanup);
test.run();
