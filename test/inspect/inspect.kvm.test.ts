// The inspector on real snapshots: two saves of a running soak guest one
// second apart, and every golden file in fixtures/snapshots.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { saveSnapshot } from '../../src/migrate/snapshot/save.js';
import { inspectCommand } from '../../src/cli/inspect.js';
import { diffCommand, type DiffArgs } from '../../src/cli/diff.js';
import { schemaCheckCommand } from '../../src/cli/schema.js';
import { COMPONENTS } from '../../src/machine/sections.js';
import { bootGuest } from '../helpers/guest.js';
import { kvmSkipReason } from '../helpers/kvm.js';
import { GOLDEN_DIR } from '../helpers/paths.js';
import { tempDir } from '../helpers/tmp.js';

const skip = kvmSkipReason();
if (skip) console.log(`  skip inspect on real snapshots: ${skip}`);
const kvmTest = skip ? test.skip : test;
const { dir, cleanup } = tempDir('inspect-kvm');
const A = join(dir, 'a.xks');
const B = join(dir, 'b.xks');

type Io = { status: number; out: string; err: string };
const capture = async (
  f: (o: { out: (t: string) => void; err: (t: string) => void; color: false }) => Promise<number>,
): Promise<Io> => {
  let out = '';
  let err = '';
  const status = await f({ out: (t) => void (out += t), err: (t) => void (err += t), color: false });
  return { status, out, err };
};
const inspect = (file: string, section?: string, json = false) =>
  capture((o) => inspectCommand({ file, json, ...(section ? { section } : {}), ...o }));
const diff = (args: Omit<DiffArgs, 'out' | 'err'>) => capture((o) => diffCommand({ ...args, ...o }));

kvmTest('soak guest on 2 vCPUs saved twice, 1 s apart', async () => {
  const g = bootGuest('soak 10s', { vcpus: 2 });
  try {
    await g.waitFor('soak: t=1s', 10000);
    await g.machine.pause();
    await saveSnapshot(g.machine, A);
    g.machine.resume();
    await new Promise((r) => setTimeout(r, 1000));
    await g.machine.pause();
    await saveSnapshot(g.machine, B);
  } finally {
    await g.machine.destroy();
  }
});

kvmTest('inspect: summary, registers, port table, Xen vCPU state of a real snapshot', async () => {
  const s = await inspect(A);
  assert.is(s.status, 0, s.err);
  for (const name of [
    'cpu[0]',
    'cpu[1]',
    'xen_overlay',
    'xen_evtchn',
    'xen_hvm',
    'xenstore',
    'irqchip',
    'kvmclock',
    'xen_time',
    'xen_console',
  ])
    assert.match(s.out, new RegExp(`^${name.replace(/[[\]]/g, '\\$&')}\\s+\\d+\\s.*this build$`, 'm'));
  assert.match(s.out, /guest\s+64\.0 MiB \(16384 pages\)/);
  const cpu = await inspect(A, 'cpu');
  assert.is(cpu.status, 0, cpu.err);
  assert.match(cpu.out, /rip\s+0x[0-9a-f_]{19}\s+0x[0-9a-f_]{19}/);
  assert.match(cpu.out, /IA32_TSC/);
  const ev = await inspect(A, 'xen_evtchn');
  assert.is(ev.status, 0, ev.err);
  assert.match(ev.out, /virq\s+0\s+VIRQ_TIMER/);
  assert.match(ev.out, /virq\s+1\s+VIRQ_TIMER/);
  assert.match(ev.out, /interdomain/);
  assert.not.match(ev.out, /pending\/masked: unknown/, 'shared_info was read from the saved RAM');
  const xv = await inspect(A, 'cpu/xen_vcpu', true);
  const j = JSON.parse(xv.out);
  assert.is(j.view.length, 2);
  for (const v of j.view) assert.ok(v.virqs.some((x: { name: string }) => x.name === 'VIRQ_TIMER'));
});

kvmTest('diff of a snapshot against itself: exit 0 and only a summary', async () => {
  const r = await diff({ a: A, b: A });
  assert.is(r.status, 0, r.err);
  assert.is(r.out.trim().split('\n').length, 1);
  assert.match(r.out, new RegExp(`^identical: ${1 + COMPONENTS.length} sections and 16384 pages of memory$`, 'm'));
});

kvmTest('diff of two saves 1 s apart: vCPU and Xen timer state and memory pages differ, exit 1', async () => {
  const r = await diff({ a: A, b: B });
  assert.is(r.status, 1, r.err);
  assert.match(r.out, /^memory: \d+ of 16384 pages differ/m);
  assert.match(r.out, /^cpu\[[01]\]\.regs\./m);
  assert.match(r.out, /^xen_time\.guest_ns: \d+ → \d+$/m);
  const j = JSON.parse((await diff({ a: A, b: B, json: true })).out);
  const sa = JSON.parse((await inspect(A, 'cpu/xen_vcpu', true)).out).sections;
  const sb = JSON.parse((await inspect(B, 'cpu/xen_vcpu', true)).out).sections;
  // Whatever the Xen timers did in that second, the diff reports it under cpu[i]/xen_vcpu.
  for (let i = 0; i < 2; i++) {
    const [x, y] = [sa[i].state['/xen_vcpu'], sb[i].state['/xen_vcpu']];
    for (const k of ['xen_singleshot_timer_ns', 'xen_periodic_timer_period']) {
      const shown = j.changes.some((c: { path: string }) => c.path === `cpu[${i}]/xen_vcpu.${k}`);
      assert.is(shown, x[k] !== y[k], `cpu[${i}]/xen_vcpu.${k}: ${x[k]} vs ${y[k]}`);
    }
  }
  const v = await diff({ a: A, b: B, ignoreVolatile: true });
  assert.not.match(v.out, /kvmclock\.clock|xen_time\.guest_ns|IA32_TSC:/);
});

test('every golden snapshot: inspect decodes every section with this build, diffs clean against itself, loads in this build', async () => {
  const files = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.xks'));
  assert.ok(files.length >= 1);
  for (const f of files) {
    const path = join(GOLDEN_DIR, f);
    const s = await inspect(path, undefined, true);
    assert.is(s.status, 0, s.err);
    const sum = JSON.parse(s.out);
    assert.equal(
      sum.sections.filter((x: { error: string | null }) => x.error !== null),
      [],
      f,
    );
    for (const section of [
      'cpu',
      'cpu/xen_vcpu',
      'xen_evtchn',
      'xen_overlay',
      'xen_hvm',
      'kvmclock',
      'xen_time',
      'irqchip',
    ]) {
      const r = await inspect(path, section);
      assert.is(r.status, 0, `${f} ${section}: ${r.err}`);
    }
    const d = await diff({ a: path, b: path });
    assert.is(d.status, 0, d.err);
    const c = await capture((o) => schemaCheckCommand({ old: path, direction: 'old-in-new', ...o }));
    assert.is(c.status, 0, c.out + c.err);
  }
});

test.after(cleanup);
test.run();
