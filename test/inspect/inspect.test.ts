// `xenkvm inspect` on synthetic snapshots written with the real descriptors
// and stream writer: summary, section views, JSON, generic decode of a
// section this build does not know, and bad files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspectCommand } from '../../src/cli/inspect.js';
import { defineState, encodeState, schemaOf, u16, u64, array, enumOf, u8 } from '../../src/vmstate/index.js';
import { diffCommand } from '../../src/cli/diff.js';
import { colorFor } from '../../src/inspect/index.js';
import { defineCpuState } from '../../src/kvm/state/index.js';
import { descriptorFromSchema, type AnyDescriptor } from '../../src/vmstate/index.js';
import { FORMAT_MINOR } from '../../src/migrate/stream/format.js';
import { fixtureSections, SHINFO_GPA, writeFixture } from '../helpers/inspect.js';
import { XEN_VCPU_V1_SCHEMA as V1_SCHEMA } from '../helpers/paths.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('inspect');
const plain = join(dir, 'plain.xkvm');
const packed = join(dir, 'packed.xkvm');
const foreign = join(dir, 'foreign.xkvm');

/** A section no build of xenkvm has: decoded from the schema embedded in the file. */
const gadget = defineState({
  name: 'gadget',
  version: 3,
  fields: { base: u64(), mode: enumOf(u8, { off: 0, fast: 1, slow: 2 }), slots: array(u16(), 4) },
});

async function run(args: {
  file: string;
  section?: string;
  json?: boolean;
}): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await inspectCommand({
    ...args,
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    color: false,
  });
  return { status, out, err };
}

test.before(async () => {
  await writeFixture(plain);
  await writeFixture(packed, { compress: true });
  await writeFixture(foreign, {
    extra: [
      {
        section: {
          name: 'gadget',
          instance: 0,
          version: 3,
          payload: encodeState(gadget, { base: 0xfee00000n, mode: 2, slots: [1, 0, 7, 0] }),
        },
        schema: schemaOf(gadget),
      },
    ],
  });
});
test.after(cleanup);

test('summary: format, producer, machine, sections with size, memory statistics', async () => {
  const r = await run({ file: plain });
  assert.is(r.status, 0, r.err);
  assert.is(r.err, '');
  assert.match(r.out, new RegExp(`format 1\\.${FORMAT_MINOR}`));
  assert.match(r.out, /producer\s+xenkvm 0\.1\.0/);
  assert.match(r.out, /memBytes\s+4194304 \(4\.00 MiB\)/);
  assert.match(r.out, /vcpus\s+2/);
  for (const s of [
    'cpu[0]',
    'cpu[1]',
    'xen_overlay',
    'xen_evtchn',
    'xen_hvm',
    'xenstore',
    'irqchip',
    'kvmclock',
    'xen_time',
  ])
    assert.match(r.out, new RegExp(`^${s.replace(/[[\]]/g, '\\$&')}\\s+1\\s+\\d`, 'm'));
  assert.match(r.out, /stored\s+17 pages/);
  assert.match(r.out, /zero\s+1007 pages/);
  assert.match(r.out, /compression\s+none/);
  assert.not.match(r.out, /\x1b\[/, 'no colour when not asked for');
});

test('summary of a compressed file shows the ratio; --json carries the same numbers', async () => {
  const r = await run({ file: packed });
  assert.match(r.out, /compression\s+deflate in 1 of 1 batch, \d+\.\d\dx/);
  const j = JSON.parse((await run({ file: packed, json: true })).out);
  assert.is(j.format, `1.${FORMAT_MINOR}`);
  assert.is(j.memory.guestPages, 1024);
  assert.is(j.memory.storedPages, 17);
  assert.is(j.memory.zeroPages, 1007);
  assert.ok(j.memory.compressionRatio > 1);
  assert.is(j.sections.length, fixtureSections());
  assert.equal(j.sections[0], {
    section: 'cpu[0]',
    name: 'cpu',
    instance: 0,
    version: 1,
    bytes: j.sections[0].bytes,
    decodedBy: 'local',
    error: null,
  });
  assert.equal(j.machine, { memBytes: 4194304, vcpus: 2 });
});

test('--section cpu: registers in hex side by side, MSRs by name, Xen vCPU state', async () => {
  const r = await run({ file: plain, section: 'cpu' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /REG\s+cpu\[0\]\s+cpu\[1\]/);
  assert.match(r.out, /rip\s+0xffff_ffff_8100_0123\s+0xffff_ffff_8100_0124/);
  assert.match(r.out, /cr3\s+0x0000_0000_0010_2000/);
  assert.match(r.out, /0x00000010\s+IA32_TSC/);
  assert.match(r.out, /mp_state\s+RUNNABLE \(0\)/);
  assert.match(r.out, /cpu\[1\]\/xen_vcpu/);
  const one = await run({ file: plain, section: 'cpu[1]' });
  assert.match(one.out, /rflags\s+0x0000_0000_0000_0246\s+PF ZF IF/);
  assert.not.match(one.out, /cpu\[0\]/);
});

test('--section xen_memory: how much was given back and the holes as address ranges', async () => {
  const r = await run({ file: plain, section: 'xen_memory' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /ballooned out: 24 pages \(0\.09 MiB\) in 2 hole\(s\)/);
  assert.match(r.out, /0x300000\s+0x30ffff\s+16\s/);
  assert.match(r.out, /0x320000\s+0x327fff\s+8\s/);
  assert.match(r.out, /memory map: the machine's own/);
});

test('--section xen_evtchn: port table with names, pending and masked from shared_info in RAM', async () => {
  const r = await run({ file: plain, section: 'xen_evtchn' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /callback \(HVM_PARAM_CALLBACK_IRQ\): 0x2000000000000f3 \(vector 0xf3\)/);
  const rows = r.out
    .split('\n')
    .filter((l) => /^\s+\d+\s/.test(l))
    .map((l) => l.trim().split(/\s+/));
  assert.equal(rows, [
    ['1', 'unbound', '0', '-', 'dom', '0', 'no', 'no'],
    ['2', 'ipi', '0', '-', '-', 'no', 'no'],
    ['3', 'virq', '0', 'VIRQ_TIMER', '-', 'yes', 'no'],
    ['4', 'virq', '1', 'VIRQ_TIMER', '-', 'no', 'yes'],
    ['5', 'interdomain', '0', '-', 'port', '1', 'no', 'no'],
  ]);
  // The same from a compressed file: the shared_info page is inflated from its batch.
  const j = JSON.parse((await run({ file: packed, section: 'xen_evtchn', json: true })).out);
  assert.equal(j.view.ports[2], {
    port: 3,
    type: 'virq',
    vcpu: 0,
    virq: 'VIRQ_TIMER',
    remote: null,
    pending: true,
    masked: false,
  });
  assert.is(j.sections[0].state.callback_param, String((2n << 56n) | 0xf3n), '64-bit state values are decimal strings');
  void SHINFO_GPA;
});

test('--section cpu/xen_vcpu: VIRQs by name, single-shot timer absolute and relative to xen_time', async () => {
  const r = await run({ file: plain, section: 'cpu[1]/xen_vcpu' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /guest time at the save: 5\.000000000 s/);
  assert.match(r.out, /single-shot timer\s+fires at 5\.003000000 s guest time, 3\.0 ms after the save/);
  assert.match(r.out, /VIRQs bound: VIRQ_TIMER → port 4/);
  assert.match(r.out, /info_default_gpa\s+none/);
  const j = JSON.parse((await run({ file: plain, section: 'cpu/xen_vcpu', json: true })).out);
  assert.is(j.view.length, 2);
  assert.equal(j.view[0].singleshot_timer, { armed: true, at_ns: '5003000000', remaining_ns: '3000000' });
  assert.equal(j.view[0].virqs, [{ virq: 0, name: 'VIRQ_TIMER', port: 3 }]);
  assert.is(j.view[0].xen_vcpu_info_gpa, '0x1fe000');
});

test('--section gnttab: version, size, frames mapped, entries in use from the saved frames', async () => {
  const r = await run({ file: plain, section: 'gnttab' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /grant table v1: 2 frame\(s\), 1024 entries/);
  assert.match(r.out, /^\s*0\s+0x400\s+0x400000$/m);
  assert.match(r.out, /^\s*0\s+permit_access\s+0\s+0xfefff$/m);
  assert.match(r.out, /^\s*9\s+permit_access\|readonly\|reading\s+0\s+0x123$/m);
  const j = JSON.parse((await run({ file: packed, section: 'gnttab', json: true })).out);
  assert.equal(j.view.frames, [
    { frame: 0, gpfn: '0x400' },
    { frame: 1, gpfn: null },
  ]);
  assert.is(j.view.entries.length, 2);
});

test('generic view for the other sections; enum names', async () => {
  const r = await run({ file: plain, section: 'xen_hvm' });
  assert.match(r.out, /params: 64 entries, 1 non-zero:\n\s+\[0\] 0x2000000000000f3/);
  const k = await run({ file: plain, section: 'kvmclock' });
  assert.match(k.out, /clock\s+5000123456/);
});

test('xenstore: the tree as path = value with permissions where not inherited, then watches and quota use', async () => {
  const r = await run({ file: plain, section: 'xenstore' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /^ {2}\/local\/domain\/1\/name = "fixture"$/m);
  assert.match(r.out, /^ {2}\/local\/domain\/1 = "" {2}\(n0 r1\)$/m);
  assert.match(r.out, /^ {2}\/local\/domain\/1\/data\/greeting = "hello"$/m);
  assert.match(r.out, /^ {2}dom 1: \/local\/domain\/1\/data\/greeting token "tok" \(relative\)$/m);
  assert.match(r.out, /^ {2}dom 1: 12 nodes$/m);
  const j = JSON.parse((await run({ file: plain, section: 'xenstore', json: true })).out);
  assert.ok(
    j.view.tree.some((n: { path: string; value: string }) => n.path === '/local/domain/1/domid' && n.value === '1'),
  );
});

test('a section this build does not know is decoded from the embedded schema', async () => {
  const s = await run({ file: foreign });
  assert.is(s.status, 0, s.err);
  assert.match(s.out, /gadget\s+3\s+\S+ B\s+embedded schema/);
  const r = await run({ file: foreign, section: 'gadget' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /decoded with the embedded schema/);
  assert.match(r.out, /base\s+0xfee00000/);
  assert.match(r.out, /mode\s+slow \(2\)/);
  assert.match(r.out, /slots: \[1, 0, 7, 0\]/);
  const j = JSON.parse((await run({ file: foreign, section: 'gadget', json: true })).out);
  assert.equal(j.sections[0].state, { base: '4276092928', mode: 2, slots: [1, 0, 7, 0] });
  assert.is(j.sections[0].decodedBy, 'schema');
});

test('a file whose cpu/xen_vcpu is of an older version: decoded with its embedded schema, views still work, diff names the change', async () => {
  const v1 = descriptorFromSchema(JSON.parse(readFileSync(V1_SCHEMA, 'utf8')));
  const oldCpu = defineCpuState({ xen_vcpu: { state: v1, optional: false } }) as unknown as AnyDescriptor;
  const old = join(dir, 'old-xen-vcpu.xkvm');
  await writeFixture(old, {
    vcpus: 1,
    cpu: {
      desc: oldCpu,
      edit: (s) =>
        void (s['xen_vcpu'] = {
          xen_vcpu_info_gpa: 0x1fe000n,
          xen_vcpu_info_default_gpa: 0x1fe000n,
          xen_vcpu_time_info_gpa: 0x1fd000n,
          xen_vcpu_runstate_gpa: 0xffffffffffffffffn,
          xen_vcpu_callback_vector: 0xf3,
        }),
    },
  });
  const s = await run({ file: old });
  assert.match(s.out, /^cpu\[0\]\s+1\s+\S+ KiB\s+embedded schema$/m);
  const r = await run({ file: old, section: 'cpu' });
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /decoded with the embedded schema/);
  assert.match(r.out, /rip\s+0xffff_ffff_8100_0123/);
  assert.match(r.out, /single-shot timer\s+-/);
  const one = join(dir, 'one.xkvm');
  await writeFixture(one, { vcpus: 1 });
  let out = '';
  const status = await diffCommand({
    a: old,
    b: one,
    out: (t) => void (out += t),
    err: (t) => void (out += t),
    color: false,
  });
  assert.is(status, 1, out);
  assert.match(out, /^cpu\[0\]\/xen_vcpu\.xen_singleshot_timer_ns: \(absent\) → 5003000000$/m);
  assert.match(out, /^cpu\[0\]\/xen_vcpu\.xen_vcpu_info_default_gpa: 0x1fe000 → 0xffffffffffffffff$/m);
});

test('colour only on a TTY and never with NO_COLOR; ANSI codes only when enabled', async () => {
  assert.is(colorFor({ isTTY: true }, {}), true);
  assert.is(colorFor({ isTTY: true }, { NO_COLOR: '1' }), false);
  assert.is(colorFor({ isTTY: false }, {}), false);
  assert.is(colorFor({}, {}), false);
  let out = '';
  await inspectCommand({ file: plain, section: 'xen_evtchn', out: (t) => void (out += t), color: true });
  assert.match(out, /\x1b\[1m/);
  assert.match(out, /\x1b\[33myes\x1b\[0m/, 'pending ports stand out');
  out = '';
  await inspectCommand({ file: plain, section: 'xen_evtchn', json: true, out: (t) => void (out += t), color: true });
  assert.not.match(out, /\x1b\[/, 'never in JSON');
});

test('unknown section name and bad selector: one line, exit 2', async () => {
  for (const section of ['nosuch', 'cpu[7]', 'cpu[', 'xen_evtchn/foo']) {
    const r = await run({ file: plain, section });
    assert.is(r.status, 2, section);
    assert.is(r.out, '');
    assert.is(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, /^xenkvm: /);
  }
});

function badCopy(name: string, edit: (b: Buffer) => Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, edit(Buffer.from(readFileSync(plain))));
  return p;
}

test('bad files: missing, truncated, bit flip, wrong magic, not a snapshot: one line, exit 2', async () => {
  const size = readFileSync(plain).length;
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'missing.xkvm'), /cannot open snapshot .*no such file/],
    [badCopy('trunc.xkvm', (b) => b.subarray(0, Math.floor(size / 2))), /truncated/],
    [badCopy('trunc-end.xkvm', (b) => b.subarray(0, size - 10)), /truncated/],
    [badCopy('flip.xkvm', (b) => ((b[300] ^= 0x10), b)), /checksum mismatch|corrupt/],
    [badCopy('magic.xkvm', (b) => ((b[0] = 0x51), b)), /wrong magic/],
    [badCopy('empty.xkvm', () => Buffer.alloc(0)), /empty input/],
    [badCopy('text.xkvm', () => Buffer.from('hello world\n')), /wrong magic/],
  ];
  for (const [file, re] of cases) {
    for (const section of [undefined, 'cpu']) {
      const r = await run({ file, ...(section ? { section } : {}) });
      assert.is(r.status, 2, file);
      assert.is(r.out, '', file);
      assert.is(r.err.split('\n').filter(Boolean).length, 1, r.err);
      assert.match(r.err, re, file);
      assert.not.match(r.err, /\n\s+at /, 'no stack trace');
    }
  }
});

test.run();
