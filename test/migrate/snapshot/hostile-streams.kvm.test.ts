// The commands a user runs, against targets and streams made to hurt them
// (issue 14): `snapshot -o` at a FIFO, a directory or a symbolic link
// (defect 6), and `restore` and `receive` of a batch that inflates to 1 GiB
// (defect 4).  Real processes, sockets and files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FRAME_BYTES, PREAMBLE_BYTES, readU64, RecordType } from '../../../src/migrate/stream/format.js';
import { encodeFrame } from '../../../src/migrate/stream/writer.js';
import { deflatedZeros, ramPagesBody } from '../../helpers/batches.js';
import { BIN } from '../../helpers/cli.js';
import { GUEST_ELF } from '../../helpers/paths.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { startReceiver } from '../../helpers/receiver.js';
import { withTimeout } from '../../helpers/async.js';
import { writeFixture } from '../../helpers/inspect.js';

const xenkvm = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60000 });
const skip = kvmSkipReason();
if (skip) console.log(`  skip hostile-streams: ${skip}`);
const kvmTest = skip ? test.skip : test;
const dir = mkdtempSync(join(tmpdir(), 'xenkvm-hostile-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface Rec {
  type: number;
  body: Uint8Array;
}

function records(bytes: Uint8Array): Rec[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: Rec[] = [];
  for (let at = PREAMBLE_BYTES; at < bytes.length;) {
    const end = at + FRAME_BYTES + readU64(v, at + 8);
    out.push({ type: v.getUint32(at, true), body: bytes.subarray(at + FRAME_BYTES, end) });
    at = end;
  }
  return out;
}

function frame(preamble: Uint8Array, recs: Rec[]): Uint8Array {
  return Buffer.concat([preamble, ...recs.flatMap((r) => [encodeFrame(r.type, r.body), r.body])]);
}

/** A compressed snapshot (the inspector's fixture) whose one RAM batch inflates to 1 GiB; and the same in migration order. */
async function overLong(): Promise<{ file: string; migration: Uint8Array }> {
  const good = join(dir, 'fixture.xks');
  await writeFixture(good, { compress: true });
  const bytes = readFileSync(good);
  const recs = records(bytes).map((r) => {
    if (r.type !== RecordType.RAM_PAGES) return r;
    const v = new DataView(r.body.buffer, r.body.byteOffset, r.body.length);
    const count = v.getUint32(0, true);
    const pfnOffset = v.getUint32(16, true);
    const pfns = Array.from({ length: count }, (_, i) => readU64(v, pfnOffset + i * 8));
    return { type: r.type, body: ramPagesBody(deflatedZeros(1 << 30), pfns, 1) };
  });
  assert.is(recs.filter((r) => r.type === RecordType.RAM_PAGES).length, 1, 'the fixture holds one batch');
  const file = join(dir, 'over-long.xks');
  const preamble = bytes.subarray(0, PREAMBLE_BYTES);
  writeFileSync(file, frame(preamble, recs));
  const order = (t: number): number =>
    t === RecordType.HEADER ? 0 : t === RecordType.RAM_PAGES ? 1 : t === RecordType.END ? 3 : 2;
  const migration = frame(
    preamble,
    [...recs].sort((a, b) => order(a.type) - order(b.type)),
  );
  return { file, migration };
}

function oneLine(stderr: string, pattern: RegExp, what: string): void {
  const lines = stderr.trim().split('\n');
  assert.is(lines.length, 1, `${what}: one line, got:\n${stderr}`);
  assert.match(lines[0]!, pattern, what);
  assert.not.match(stderr, /internal error|\n\s+at /, what);
}

test('restore of a batch that inflates to 1 GiB: one line, exit 2, at once', async () => {
  const { file } = await overLong();
  const t0 = performance.now();
  const r = xenkvm('restore', file);
  const ms = performance.now() - t0;
  assert.is(r.status, 2, r.stderr);
  oneLine(
    r.stderr,
    /over-long\.xks: RAM_PAGES record at offset \d+: deflated data inflates to more than \d+ bytes/,
    'restore',
  );
  assert.is(r.stdout, '');
  assert.ok(ms < 10_000, `${ms.toFixed(0)} ms`);
});

kvmTest('receive of a batch that inflates to 1 GiB: the source is told ERR, nothing runs', async () => {
  const { migration } = await overLong();
  const rx = startReceiver();
  const addr = await withTimeout(rx.address, 20000, 'receiver address');
  const m = /^tcp:([\d.]+):(\d+)$/.exec(addr)!;
  const answer = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const s = connect({ host: m[1]!, port: Number(m[2]) }, () => s.write(migration, () => s.end()));
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.on('close', () => resolve(text));
      setTimeout(() => reject(new Error('no answer')), 20000).unref();
    }),
    25000,
    'answer',
  );
  assert.match(answer, /^ERR .*RAM_PAGES record at offset \d+: deflated data inflates to more than \d+ bytes/);
  // The destination logs the refused source and waits for another.
  await withTimeout(
    (async () => {
      while (!/waiting for another connection/.test(rx.err())) await new Promise((r) => setTimeout(r, 50));
    })(),
    20000,
    'receiver waiting on',
  );
  rx.child.kill('SIGKILL');
  await rx.exit;
  assert.is(rx.out(), '', 'no guest output');
});

kvmTest(
  'snapshot -o a FIFO, a directory or a symbolic link: one line, the target untouched, the guest runs on',
  async () => {
    const sock = join(dir, 'vm.sock');
    const vm = spawn(process.execPath, [BIN, 'run', GUEST_ELF, '--cmdline', 'soak 60s', '--qmp', sock], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    vm.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => vm.on('close', (code) => r(code)));
    try {
      for (let i = 0; i < 200 && !(existsSync(sock) && out.includes('soak: vcpu 0')); i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(existsSync(sock), `control socket: ${out}`);
      const fifo = join(dir, 'pipe');
      execFileSync('mkfifo', [fifo]);
      const sub = join(dir, 'sub');
      mkdirSync(sub);
      const real = join(dir, 'real.xks');
      writeFileSync(real, 'keep me');
      const link = join(dir, 'link.xks');
      symlinkSync(real, link);
      for (const [target, why] of [
        [fifo, /it is a FIFO \(named pipe\), not a snapshot file/],
        [sub, /it is a directory, not a snapshot file/],
        [link, /it is a symbolic link/],
      ] as const) {
        const r = xenkvm('snapshot', '--qmp', sock, '-o', target);
        assert.is.not(r.status, 0, `${target}: ${r.stdout}`);
        oneLine(
          r.stderr,
          new RegExp(`^xenkvm: snapshot failed: cannot write snapshot ${target}: ${why.source}`),
          target,
        );
      }
      assert.ok(lstatSync(fifo).isFIFO(), 'still a FIFO');
      assert.ok(lstatSync(sub).isDirectory(), 'still a directory');
      assert.is(readlinkSync(link), real, 'still the link');
      assert.is(readFileSync(real, 'utf8'), 'keep me', 'its target unchanged');
      const st = xenkvm('ctl', sock, 'query-status', '--json');
      assert.is(st.status, 0, st.stderr);
      assert.match(st.stdout, /"running":\s*true/);
      // A regular file still works.
      const ok = xenkvm('snapshot', '--qmp', sock, '-o', join(dir, 'fine.xks'));
      assert.is(ok.status, 0, ok.stderr);
      assert.not.match(out, /VIOLATION/);
    } finally {
      xenkvm('ctl', sock, 'quit');
      await withTimeout(exited, 20000, 'guest exit').catch(() => vm.kill('SIGKILL'));
    }
  },
);

test.run();
