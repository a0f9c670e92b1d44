// `xenkvm diff` on synthetic snapshots: field paths, enum names, memory
// ranges, --pages, --hexdump, --ignore and --ignore-volatile, JSON, exit
// statuses as diff(1), and the streamed memory diff against a brute-force one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { diffCommand, type DiffArgs } from '../../src/cli/diff.js';
import { diffMemory, DIFF_WINDOW_PAGES, loadSnapshot } from '../../src/inspect/index.js';
import { PAGE_SIZE } from '../../src/migrate/index.js';
import { defineState, encodeState, schemaOf, u32 } from '../../src/vmstate/index.js';
import type { StateRecord } from '../../src/vmstate/index.js';
import { fixtureSections, fixtureXenstore, guestRam, writeFixture } from '../helpers/inspect.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('inspect');
const p = (n: string): string => join(dir, n);

async function run(args: Omit<DiffArgs, 'out' | 'err'>): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await diffCommand({ ...args, out: (t) => void (out += t), err: (t) => void (err += t), color: false });
  return { status, out, err };
}

const extra = defineState({ name: 'extra', version: 1, fields: { x: u32() } });

test.before(async () => {
  await writeFixture(p('a.xkvm'));
  await writeFixture(p('a-packed.xkvm'), { compress: true });
  const ram = guestRam();
  ram[0x12 * PAGE_SIZE + 5] ^= 1; // inside the random pages: one page differs
  ram.fill(0, 0x1f * PAGE_SIZE, 0x20 * PAGE_SIZE); // page 0x1f becomes zero (absent in B)
  ram[0x200 * PAGE_SIZE] = 9; // 0x200 and 0x201 become non-zero: one range of two pages
  ram[0x201 * PAGE_SIZE + 4095] = 9;
  await writeFixture(p('b.xkvm'), {
    ram,
    compress: true,
    edit: (cpus, xen) => {
      ((cpus[1]!['xen_vcpu'] as StateRecord)['xen_virq'] as number[])[0] = 5;
      (cpus[0]!['regs'] as StateRecord)['rax'] = 0x2an;
      cpus[1]!['mp_state'] = 3;
      (cpus[0]!['msrs'] as StateRecord[])[0]!['data'] = 999_999_999n; // IA32_TSC
      (cpus[0]!['lapic'] as Uint8Array)[0x390] = 0x77; // LAPIC timer current count
      (cpus[0]!['lapic'] as Uint8Array)[0x380] = 0x10; // LAPIC timer initial count: not volatile
      xen.find((s) => s.desc.name === 'kvmclock')!.state['clock'] = 6_000_000_000n;
      xen.find((s) => s.desc.name === 'xen_time')!.state['guest_ns'] = 6_000_000_000n;
      xen.find((s) => s.desc.name === 'xenstore')!.state = fixtureXenstore('bye') as unknown as StateRecord;
      const mem = xen.find((s) => s.desc.name === 'xen_memory')!.state;
      (mem['holes'] as StateRecord[])[1]!['count'] = 9n;
      mem['ballooned_pages'] = 25n;
    },
    extra: [
      {
        section: { name: 'extra', instance: 0, version: 1, payload: encodeState(extra, { x: 1 }) },
        schema: schemaOf(extra),
      },
    ],
  });
});
test.after(cleanup);

test('a file against itself, and raw against compressed: exit 0, one summary line', async () => {
  for (const b of ['a.xkvm', 'a-packed.xkvm']) {
    const r = await run({ a: p('a.xkvm'), b: p(b) });
    assert.is(r.status, 0, r.err);
    assert.is(r.out, `identical: ${fixtureSections()} sections and 1024 pages of memory\n`);
    assert.is(r.err, '');
  }
});

test('field-level changes with section paths, enum names, MSRs by name, byte ranges; memory ranges; exit 1', async () => {
  const r = await run({ a: p('a.xkvm'), b: p('b.xkvm') });
  assert.is(r.status, 1, r.err);
  const lines = r.out.trim().split('\n');
  for (const want of [
    'cpu[0].regs.rax: 0x0 → 0x2a',
    'cpu[0].lapic[896]: 00 → 10',
    'cpu[0].lapic[912]: 00 → 77',
    'cpu[0].msrs.IA32_TSC: 123456789 → 999999999',
    'cpu[1].mp_state: RUNNABLE (0) → HALTED (3)',
    'cpu[1]/xen_vcpu.xen_virq[0]: 4 → 5',
    'kvmclock.clock: 5000123456 → 6000000000',
    'xen_time.guest_ns: 5000000000 → 6000000000',
    'xenstore.node./local/domain/1/data/greeting: "hello" → "bye"',
    'xen_memory.ballooned_pages: 0x18 → 0x19',
    'xen_memory.holes[1].count: 8 → 9',
    `only in ${p('b.xkvm')}: section extra`,
    'memory: 4 of 1024 pages differ (16.0 KiB) in 3 ranges',
    '  0x12000-0x12fff  1 page',
    '  0x1f000-0x1ffff  1 page',
    '  0x200000-0x201fff  2 pages',
  ])
    assert.ok(lines.includes(want), `missing line: ${want}\n${r.out}`);
  assert.match(
    lines[lines.length - 1]!,
    /^different: 11 fields differ, 1 section in one file only, 4 of 1024 pages differ$/,
  );
});

test('a grant frame mapped elsewhere and a grown table show as gnttab fields', async () => {
  await writeFixture(p('g.xkvm'), {
    edit: (_cpus, xen) => {
      const g = xen.find((s) => s.desc.name === 'gnttab')!.state;
      g['nr_frames'] = 3;
      g['frame_gpfn'] = [0x401n, 0xffff_ffff_ffff_ffffn, 0x500n];
    },
  });
  const r = await run({ a: p('a.xkvm'), b: p('g.xkvm') });
  assert.is(r.status, 1, r.err);
  const lines = r.out.trim().split('\n');
  for (const want of [
    'gnttab.nr_frames: 2 → 3',
    'gnttab.frame_gpfn: ["0x400","0xffffffffffffffff"] → ["0x401","0xffffffffffffffff","0x500"]',
  ])
    assert.ok(lines.includes(want), `missing line: ${want}\n${r.out}`);
  // The same table size: only the frame that moved.
  await writeFixture(p('h.xkvm'), {
    edit: (_cpus, xen) => {
      xen.find((s) => s.desc.name === 'gnttab')!.state['frame_gpfn'] = [0x400n, 0x10000n];
    },
  });
  const h = await run({ a: p('a.xkvm'), b: p('h.xkvm') });
  assert.ok(h.out.split('\n').includes('gnttab.frame_gpfn[1]: 0xffffffffffffffff → 0x10000'), h.out);
});

test('--ignore (exact, glob, byte range) and --ignore-volatile', async () => {
  const r = await run({ a: p('a.xkvm'), b: p('b.xkvm'), ignore: ['cpu.regs.rax', '*.xen_virq', 'cpu[1].mp_state'] });
  assert.not.match(r.out, /regs\.rax|xen_virq|mp_state/);
  assert.match(r.out, /kvmclock\.clock/);
  const v = await run({ a: p('a.xkvm'), b: p('b.xkvm'), ignoreVolatile: true });
  assert.not.match(v.out, /kvmclock\.clock|IA32_TSC|guest_ns|lapic\[912\]/);
  assert.match(v.out, /cpu\[0\]\.lapic\[896\]: 00 → 10/, 'the initial count is not volatile');
  assert.match(v.out, /cpu\[1\]\/xen_vcpu\.xen_virq\[0\]: 4 → 5/);
  assert.is(v.status, 1);
});

test('--pages lists every range; --hexdump shows both sides with the differing bytes marked', async () => {
  const r = await run({ a: p('a.xkvm'), b: p('b.xkvm'), pages: true, hexdump: '0x12000,32' });
  assert.is(r.status, 1, r.err);
  const hd = r.out.split('hexdump of 32 bytes at 0x12000')[1]!.trim().split('\n').slice(1);
  assert.match(hd[0]!, /^0x12000  a ([0-9a-f]{2} ){15}[0-9a-f]{2}\s+\|/);
  assert.match(hd[1]!, /^\s+b ([0-9a-f]{2} ){15}[0-9a-f]{2}\s+\|/);
  assert.is(hd[2]!.trim(), '^^', 'byte 5 differs');
  assert.is(hd[2]!.indexOf('^^'), hd[0]!.indexOf(' a ') + 3 + 5 * 3);
  assert.match(hd[3]!, /^0x12010  = /);
});

test('--json: changes with JSON values, ranges with hex GPAs', async () => {
  const r = await run({ a: p('a.xkvm'), b: p('b.xkvm'), json: true, hexdump: '0x200000,16' });
  assert.is(r.status, 1);
  const j = JSON.parse(r.out);
  assert.is(j.identical, false);
  assert.ok(
    j.changes.some(
      (c: { path: string; a: unknown; b: unknown }) =>
        c.path === 'cpu[0].msrs.IA32_TSC' && c.a === '123456789' && c.b === '999999999',
    ),
  );
  assert.ok(
    j.changes.some(
      (c: { path: string; a: unknown; b: unknown }) =>
        c.path === 'cpu[1]/xen_vcpu.xen_virq[0]' && c.a === 4 && c.b === 5,
    ),
  );
  assert.equal(j.onlyInB, ['extra']);
  assert.equal(j.memory.ranges, [
    { gpa: '0x12000', pages: 1 },
    { gpa: '0x1f000', pages: 1 },
    { gpa: '0x200000', pages: 2 },
  ]);
  assert.is(j.memory.zeroInA, 2);
  assert.is(j.memory.zeroInB, 1);
  assert.is(j.hexdump.a, '00'.repeat(16));
  assert.is(j.hexdump.b, `09${'00'.repeat(15)}`);
  const same = JSON.parse((await run({ a: p('a.xkvm'), b: p('a.xkvm'), json: true })).out);
  assert.equal([same.identical, same.changes, same.memory.differingPages], [true, [], 0]);
});

test('trouble is exit 2 with one line: bad file, bad --hexdump', async () => {
  writeFileSync(p('trunc.xkvm'), readFileSync(p('a.xkvm')).subarray(0, 5000));
  const cases: Array<[Omit<DiffArgs, 'out' | 'err'>, RegExp]> = [
    [{ a: p('a.xkvm'), b: p('nosuch.xkvm') }, /cannot open snapshot/],
    [{ a: p('trunc.xkvm'), b: p('a.xkvm') }, /truncated/],
    [{ a: p('a.xkvm'), b: p('a.xkvm'), hexdump: 'zz' }, /--hexdump wants GPA\[,LEN\]/],
    [{ a: p('a.xkvm'), b: p('a.xkvm'), hexdump: '0x10000000' }, /beyond guest memory/],
  ];
  for (const [args, re] of cases) {
    const r = await run(args);
    assert.is(r.status, 2, JSON.stringify(args));
    assert.is(r.out, '');
    assert.is(r.err.split('\n').filter(Boolean).length, 1, r.err);
    assert.match(r.err, re);
  }
});

test('streamed memory diff across windows equals a brute-force comparison', async () => {
  const pages = DIFF_WINDOW_PAGES * 2 + 37;
  const a = new Uint8Array(pages * PAGE_SIZE);
  let x = 12345;
  const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
  for (let pg = 0; pg < pages; pg++)
    if (rnd() % 4 === 0) for (let i = 0; i < PAGE_SIZE; i += 64) a[pg * PAGE_SIZE + i] = (rnd() & 0xff) | 1;
  const b = a.slice();
  for (const pg of [0, 1, DIFF_WINDOW_PAGES - 1, DIFF_WINDOW_PAGES, DIFF_WINDOW_PAGES + 1, 2 * DIFF_WINDOW_PAGES + 36])
    b[pg * PAGE_SIZE + 100] ^= 0x80;
  for (let k = 0; k < 50; k++) {
    const pg = rnd() % pages;
    b[pg * PAGE_SIZE + (rnd() % PAGE_SIZE)] ^= 4;
  }
  b.fill(0, 300 * PAGE_SIZE, 310 * PAGE_SIZE);
  const expect: number[] = [];
  for (let pg = 0; pg < pages; pg++)
    if (!Buffer.from(a.buffer, pg * PAGE_SIZE, PAGE_SIZE).equals(Buffer.from(b.buffer, pg * PAGE_SIZE, PAGE_SIZE)))
      expect.push(pg);
  await writeFixture(p('big-a.xkvm'), { ram: a });
  await writeFixture(p('big-b.xkvm'), { ram: b, compress: true });
  const [sa, sb] = [await loadSnapshot(p('big-a.xkvm')), await loadSnapshot(p('big-b.xkvm'))];
  try {
    const d = await diffMemory(sa.pages, sb.pages);
    const got = d.ranges.flatMap((r) => Array.from({ length: r.pages }, (_, i) => r.pfn + i));
    assert.equal(got, expect);
    assert.is(d.differingPages, expect.length);
  } finally {
    await sa.close();
    await sb.close();
  }
});

test.run();
