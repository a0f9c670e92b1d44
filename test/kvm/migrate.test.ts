// Live migration on real KVM, proven by the soak guest that lives through it
// (lost or duplicated events, time going backwards, memory corruption are
// VIOLATION lines on its console).  The destination is `xenkvm receive` in a
// child process listening on loopback TCP; the source is this process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectTo, parseAddress } from '../../src/migrate/live/address.js';
import { migrate, MigrationError, type RoundProgress } from '../../src/migrate/live/source.js';
import { bootGuest, kvmSkipReason } from '../helpers/guest.js';

const RECEIVE = fileURLToPath(new URL('../../src/cli/receive.js', import.meta.url));
const skip = kvmSkipReason();
if (skip) console.log(`  skip migrate: ${skip}`);
const kvmTest = skip ? test.skip : test;

export interface Receiver {
  child: ChildProcess;
  /** tcp:127.0.0.1:PORT once listening. */
  address: Promise<string>;
  out(): string;
  err(): string;
  exit: Promise<number | null>;
}

/** `xenkvm receive --listen tcp:127.0.0.1:0` in a child process (through receive.js: main.ts wires the command). */
const dir = mkdtempSync(join(tmpdir(), 'xenkvm-mig-'));
// A launcher file, not `node -e`: worker threads inherit execArgv and would choke on --input-type.
const LAUNCHER = join(dir, 'receive.mjs');
writeFileSync(LAUNCHER, `const m = await import(${JSON.stringify(RECEIVE)});\nprocess.exitCode = await m.receiveCommand({ listen: process.argv[2], quiet: false });\n`);

export function startReceiver(listen = 'tcp:127.0.0.1:0'): Receiver {
  const child = spawn(process.execPath, [LAUNCHER, listen], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let onAddr: (a: string) => void = () => {};
  const address = new Promise<string>((resolve) => (onAddr = resolve));
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    err += d;
    const m = /waiting for a guest on (\S+)/.exec(err);
    if (m) onAddr(m[1]!);
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, address, out: () => out, err: () => err, exit };
}

export const statusLines = (text: string) => [...text.matchAll(/soak: t=(\d+)s ticks=(\d+) ipi=(\d+) xdom=(\d+)/g)].map((m) => m.slice(1).map(Number) as [number, number, number, number]);

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no result in ${ms} ms`)), ms).unref())]);
}

kvmTest('soak on 2 vCPUs migrates over loopback TCP to xenkvm receive in a child process and runs on clean, counters continuing', async () => {
  const g = bootGuest('soak 10s', { vcpus: 2 });
  const r = startReceiver();
  const rounds: RoundProgress[] = [];
  try {
    await g.waitFor('soak: t=2s', 15000);
    const sock = await connectTo(parseAddress(await withTimeout(r.address, 10000, 'receiver listening'), 'test'));
    const report = await migrate(g.machine, sock, { onProgress: (p) => rounds.push(p) });
    const last = statusLines(g.console()).at(-1)!;
    console.log(`  soak 2 vCPUs, 64 MiB: total ${report.totalMs.toFixed(0)} ms, downtime ${report.downtimeMs.toFixed(1)} ms, ${(report.bytes / (1 << 20)).toFixed(1)} MiB, ${report.rounds} rounds (+final ${report.finalPages} pages), ${report.mbps.toFixed(0)} MiB/s`);
    assert.equal(g.machine.status, 'paused', 'the source is left paused for the caller to stop');
    assert.ok(rounds.at(-1)!.final && rounds[0]!.round === 0, 'progress per round, the last one final');
    await g.machine.destroy();
    const code = await withTimeout(r.exit, 30000, 'destination run');
    const out = r.out();
    assert.is(code, 0, r.err());
    assert.ok(out.includes('RESULT: PASS'), `destination did not pass:\n${out.slice(-2000)}\n${r.err()}`);
    assert.not.match(out, /VIOLATION/);
    assert.not.match(g.console(), /VIOLATION/);
    const first = statusLines(out)[0]!;
    assert.ok(first[0] >= last[0] && first[1] > last[1], `counters continue: before t=${last[0]} ticks=${last[1]}, after t=${first[0]} ticks=${first[1]}`);
    const gap = /maxgap=(\d+)us/.exec(out)?.[1];
    console.log(`  guest's largest tick gap after the migration: ${gap} us`);
  } finally {
    r.child.kill('SIGKILL');
    await g.machine.destroy();
  }
});

kvmTest('the destination killed before, during and after the pause, or refusing: the source guest keeps running, no violation', async () => {
  const g = bootGuest('soak 12s', { vcpus: 2 });
  try {
    await g.waitFor('soak: t=1s', 15000);
    const attempt = async (what: string, kill: 'connect' | 'round0' | 'pause' | 'never', stream?: (r: Receiver) => void): Promise<void> => {
      const r = startReceiver();
      stream?.(r);
      const sock = await connectTo(parseAddress(await withTimeout(r.address, 10000, 'receiver listening'), 'test'));
      if (kill === 'connect') r.child.kill('SIGKILL');
      const err = await migrate(g.machine, sock, {
        confirmTimeoutMs: 5000,
        onProgress: (p) => {
          if (kill === 'round0' && p.round === 0) r.child.kill('SIGKILL');
        },
        onPause: () => {
          if (kill === 'pause') r.child.kill('SIGKILL');
        },
      }).then(() => null, (e: unknown) => e);
      r.child.kill('SIGKILL');
      await r.exit;
      assert.instance(err, MigrationError, `${what}: the migration must fail`);
      // resume() wakes the vCPU threads; they report RUNNING a moment later.
      for (let i = 0; i < 100 && g.machine.status !== 'running'; i++) await new Promise((res) => setTimeout(res, 10));
      assert.is(g.machine.status, 'running', `${what}: the source guest runs`);
      const seen = statusLines(g.console()).length;
      await g.waitFor(new RegExp(`(soak: t=\\d+s[^\\n]*\\n[^]*){${seen + 1}}`), 5000);
      console.log(`  ${what}: ${(err as Error).message}`);
    };
    await attempt('killed right after connecting', 'connect');
    await attempt('killed after round 0', 'round0');
    await attempt('killed at the pause', 'pause');
    await g.waitFor('RESULT:', 20000);
    assert.ok(g.console().includes('RESULT: PASS'), g.console().slice(-2000));
    assert.not.match(g.console(), /VIOLATION/);
  } finally {
    await g.machine.destroy();
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
