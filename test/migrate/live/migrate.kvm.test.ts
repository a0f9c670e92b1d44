// Live migration on real KVM, proven by the soak guest that lives through it
// (lost or duplicated events, time going backwards, memory corruption are
// VIOLATION lines on its console).  The destination is `xenkvm receive` in a
// child process listening on loopback TCP; the source is this process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectTo, parseAddress } from '../../../src/migrate/live/transport/address.js';
import { migrate, MigrationError, type RoundProgress } from '../../../src/migrate/live/send.js';
import { bootGuest, soakStatusLines } from '../../helpers/guest.js';
import { startReceiver, type Receiver } from '../../helpers/receiver.js';
import { withTimeout } from '../../helpers/async.js';
import { kvmSkipReason } from '../../helpers/kvm.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip migrate: ${skip}`);
const kvmTest = skip ? test.skip : test;

kvmTest(
  'soak on 2 vCPUs migrates over loopback TCP to xenkvm receive in a child process and runs on clean, counters continuing',
  async () => {
    const g = bootGuest('soak 10s', { vcpus: 2 });
    const r = startReceiver();
    const rounds: RoundProgress[] = [];
    try {
      await g.waitFor('soak: t=2s', 15000);
      const sock = await connectTo(parseAddress(await withTimeout(r.address, 10000, 'receiver listening'), 'test'));
      const report = await migrate(g.machine, sock, { onProgress: (p) => rounds.push(p) });
      const last = soakStatusLines(g.console()).at(-1)!;
      console.log(
        `  soak 2 vCPUs, 64 MiB: total ${report.totalMs.toFixed(0)} ms, downtime ${report.downtimeMs.toFixed(1)} ms (guest paused ${report.guestDowntimeMs?.toFixed(1)}), ${(report.bytes / (1 << 20)).toFixed(1)} MiB, ${report.rounds} rounds (+final ${report.finalPages} pages), ${report.mbps.toFixed(0)} MiB/s`,
      );
      assert.equal(g.machine.status, 'paused', 'the source is left paused for the caller to stop');
      const guestPause = report.guestDowntimeMs;
      assert.ok(
        guestPause !== undefined && guestPause > 0 && guestPause <= report.downtimeMs,
        `guest pause ${guestPause} ms within the downtime ${report.downtimeMs} ms`,
      );
      assert.ok(
        report.phases.answerMs !== undefined &&
          Math.abs(report.downtimeMs - report.phases.answerMs - guestPause) < 1e-6,
        "the guest pause is the downtime less the destination's running-to-answer time",
      );
      assert.ok(rounds.at(-1)!.final && rounds[0]!.round === 0, 'progress per round, the last one final');
      await g.machine.destroy();
      const code = await withTimeout(r.exit, 30000, 'destination run');
      const out = r.out();
      assert.is(code, 0, r.err() + '\n--- destination console:\n' + r.out().slice(-3000));
      assert.ok(out.includes('RESULT: PASS'), `destination did not pass:\n${out.slice(-2000)}\n${r.err()}`);
      assert.not.match(out, /VIOLATION/);
      assert.not.match(g.console(), /VIOLATION/);
      const first = soakStatusLines(out)[0]!;
      assert.ok(
        first[0] >= last[0] && first[1] > last[1],
        `counters continue: before t=${last[0]} ticks=${last[1]}, after t=${first[0]} ticks=${first[1]}`,
      );
      const gap = /maxgap=(\d+)us/.exec(out)?.[1];
      console.log(`  guest's largest tick gap after the migration: ${gap} us`);
    } finally {
      r.child.kill('SIGKILL');
      await g.machine.destroy();
    }
  },
);

kvmTest(
  'the destination killed before, during and after the pause, or refusing: the source guest keeps running, no violation',
  async () => {
    const g = bootGuest('soak 12s', { vcpus: 2 });
    try {
      await g.waitFor('soak: t=1s', 15000);
      const attempt = async (
        what: string,
        kill: 'connect' | 'round0' | 'pause' | 'final' | 'never',
        stream?: (r: Receiver) => void,
      ): Promise<void> => {
        const r = startReceiver();
        stream?.(r);
        const sock = await connectTo(parseAddress(await withTimeout(r.address, 10000, 'receiver listening'), 'test'));
        if (kill === 'connect') r.child.kill('SIGKILL');
        const err = await migrate(g.machine, sock, {
          confirmTimeoutMs: 5000,
          onProgress: (p) => {
            if (kill === 'round0' && p.round === 0) r.child.kill('SIGKILL');
            // Everything is sent; the destination, stopped since the pause, cannot have answered.
            if (kill === 'final' && p.final) r.child.kill('SIGKILL');
          },
          onPause: () => {
            if (kill === 'pause') r.child.kill('SIGKILL');
            if (kill === 'final') r.child.kill('SIGSTOP');
          },
        }).then(
          () => null,
          (e: unknown) => e,
        );
        r.child.kill('SIGKILL');
        await r.exit;
        assert.instance(err, MigrationError, `${what}: the migration must fail`);
        // resume() wakes the vCPU threads; they report RUNNING a moment later.
        for (let i = 0; i < 100 && g.machine.status !== 'running'; i++) await new Promise((res) => setTimeout(res, 10));
        assert.is(g.machine.status, 'running', `${what}: the source guest runs`);
        const seen = soakStatusLines(g.console()).length;
        await g.waitFor(new RegExp(`(soak: t=\\d+s[^\\n]*\\n[^]*){${seen + 1}}`), 5000);
        console.log(`  ${what}: ${(err as Error).message}`);
      };
      await attempt('killed right after connecting', 'connect');
      await attempt('killed after round 0', 'round0');
      await attempt('killed at the pause', 'pause');
      await attempt('killed after the final round, before its answer', 'final');
      await g.waitFor('RESULT:', 20000);
      assert.ok(g.console().includes('RESULT: PASS'), g.console().slice(-2000));
      assert.not.match(g.console(), /VIOLATION/);
    } finally {
      await g.machine.destroy();
    }
  },
);

test.run();
