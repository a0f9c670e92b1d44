// Snapshot and restore on real KVM, proven by the soak guest that lives
// through them: it checks for lost or duplicated events, time going
// backwards and memory corruption, and prints its counters every second.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { basename, join } from 'node:path';
import { restoreSnapshot, saveSnapshot } from '../../../src/migrate/snapshot/save.js';
import { diffStates } from '../../../src/vmstate/index.js';
import { saveMachineState, type SavedSection } from '../../../src/machine/state.js';
import { bootGuest, soakStatusLines } from '../../helpers/guest.js';
import { BIN } from '../../helpers/cli.js';
import { goldenRunnableHere } from '../../helpers/golden.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip snapshot: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('snapshot');

/** Runs `xenkvm restore FILE` in a new process; resolves with its exit status and stdout. */
function restoreInNewProcess(file: string): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'restore', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (status) => resolve({ status, out, err }));
  });
}

function assertCleanRun(out: string, what: string): void {
  assert.ok(out.includes('RESULT: PASS'), `${what} did not pass:\n${out.slice(-2000)}`);
  assert.not.match(out, /VIOLATION/, what);
  assert.match(out, /violations=0/, what);
}

kvmTest(
  "every golden snapshot in fixtures/snapshots that this host's CPU can run restores in a new process and runs to a clean end",
  async () => {
    const { runnable, refused } = await goldenRunnableHere();
    for (const r of refused)
      console.log(`  skip ${basename(r.file)}: saved on another CPU (${r.why.replace(/^.*: this host/, 'this host')})`);
    assert.ok(
      runnable.length >= 1,
      `no golden snapshot runs on this host's CPU; generate one for it (tools/gen-golden-snapshot.ts): ${refused.map((r) => r.why).join('; ')}`,
    );
    for (const file of runnable) {
      const r = await restoreInNewProcess(file);
      assert.is(r.status, 0, `${basename(file)}: ${r.err}`);
      assertCleanRun(r.out, basename(file));
    }
  },
);

kvmTest(
  'soak on 2 vCPUs snapshotted at 5 random moments: each restores in a new process, continues its counters, runs 10 s clean',
  async () => {
    const g = bootGuest('soak 16s', { vcpus: 2 });
    const taken: Array<{ file: string; last: [number, number, number, number] }> = [];
    try {
      await g.waitFor('soak: t=1s', 10000);
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 700));
        await g.machine.pause();
        const last = soakStatusLines(g.console()).at(-1)!;
        const file = join(dir, `moment-${i}.xks`);
        await saveSnapshot(g.machine, file);
        taken.push({ file, last });
        g.machine.resume();
      }
    } finally {
      await g.machine.destroy();
    }
    assert.not.match(g.console(), /VIOLATION/, 'the source guest stayed clean across the five pauses');
    // Two at a time: each restored guest has 2 vCPUs and mostly sleeps.
    for (let i = 0; i < taken.length; i += 2) {
      const runs = await Promise.all(taken.slice(i, i + 2).map((t) => restoreInNewProcess(t.file)));
      runs.forEach((r, k) => {
        const { last } = taken[i + k]!;
        // On failure, the guest's own account (VIOLATION lines, its last status) says what went wrong.
        assert.is(
          r.status,
          0,
          `${r.err}${r.out
            .split('\n')
            .filter((l) => /VIOLATION|RESULT|exception|fault/i.test(l))
            .slice(0, 20)
            .join('\n')}\n${r.out.slice(-600)}`,
        );
        assertCleanRun(r.out, `restore of moment ${i + k}`);
        const lines = soakStatusLines(r.out);
        const [t, ticks] = lines[0]!;
        assert.ok(
          t >= last[0] && ticks > last[1],
          `counters continue: before t=${last[0]} ticks=${last[1]}, after t=${t} ticks=${ticks}`,
        );
        assert.ok(
          lines.at(-1)![0] - last[0] >= 9,
          `ran about 10 s after the restore (t ${last[0]} → ${lines.at(-1)![0]})`,
        );
      });
    }
  },
);

/** Fields that must move between two saves: clocks, the TSC, the LAPIC timer's current count. */
function volatileChange(name: string, a: SavedSection, path: string): boolean {
  if (name === 'kvmclock' || name === 'xen_time') return true;
  if (/^lapic\[91[2-5]/.test(path)) return true; // TMCCT at 0x390
  const msr = /^msrs\[(\d+)\]\.data$/.exec(path);
  const msrs = (a.state as { msrs?: Array<{ index: number }> }).msrs;
  return msr !== null && msrs?.[Number(msr[1])]?.index === 0x10;
}

kvmTest(
  'snapshot, restore, snapshot again at once with --stop: same vCPU and device state but for clocks and TSC',
  async () => {
    const g = bootGuest('soak 30s', { vcpus: 2 });
    const file = join(dir, 'a.xks');
    let a: SavedSection[];
    try {
      await g.waitFor('soak: t=1s', 10000);
      await g.machine.pause();
      a = saveMachineState(g.machine);
      await saveSnapshot(g.machine, file);
    } finally {
      await g.machine.destroy();
    }
    const m = await restoreSnapshot(file, { console: () => {}, log: () => {} });
    try {
      const b = saveMachineState(m);
      assert.equal(
        b.map((s) => `${s.name}[${s.instance}]`),
        a.map((s) => `${s.name}[${s.instance}]`),
      );
      const moved = a.flatMap((s, i) =>
        diffStates(s.state, b[i]!.state)
          .filter((c) => !volatileChange(s.name, s, c.path))
          .map((c) => `${s.name}[${s.instance}].${c.path}`),
      );
      assert.equal(moved, [], 'only volatile fields differ');
    } finally {
      await m.destroy();
    }
  },
);

test.after(cleanup);
test.run();
