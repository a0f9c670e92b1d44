// `xenkvm schema` and `xenkvm schema check`: this build's descriptors, the
// JSON form round-tripping into check, breaking changes in both directions,
// snapshots and single-section schema files as arguments, bad input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemaCheckCommand, schemaCommand, type SchemaCheckArgs } from '../../src/cli/schema.js';
import { writeFixture } from '../helpers/inspect.js';
import { XEN_VCPU_V1_SCHEMA as V1_SCHEMA } from '../helpers/paths.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('inspect');
const p = (n: string): string => join(dir, n);

type Io = { status: number; out: string; err: string };
async function io(
  f: (o: { out: (t: string) => void; err: (t: string) => void; color: false }) => Promise<number>,
): Promise<Io> {
  let out = '';
  let err = '';
  const status = await f({ out: (t) => void (out += t), err: (t) => void (err += t), color: false });
  return { status, out, err };
}
const check = (args: Omit<SchemaCheckArgs, 'out' | 'err'>) => io((o) => schemaCheckCommand({ ...args, ...o }));

let current: {
  sections: Record<
    string,
    { name: string; version: number; fields: Array<Record<string, unknown>>; subsections: unknown[] }
  >;
};

test.before(async () => {
  current = JSON.parse((await io((o) => schemaCommand({ json: true, ...o }))).out);
  writeFileSync(p('current.json'), JSON.stringify(current));
  await writeFixture(p('snap.xkvm'));
});
test.after(cleanup);

test('schema: every section the writer uses, cpu with its cpu/xen_vcpu subsection, field kinds and versions', async () => {
  const r = await io((o) => schemaCommand(o));
  assert.is(r.status, 0);
  for (const s of [
    'cpu',
    'xen_overlay',
    'xen_evtchn',
    'xen_hvm',
    'xenstore',
    'xen_pages',
    'gnttab',
    'xen_memory',
    'irqchip',
    'kvmclock',
    'xen_time',
    'xen_console',
  ])
    assert.match(r.out, new RegExp(`^${s}  version \\d`, 'm'));
  assert.match(r.out, /^ {2}cpu\/xen_vcpu {2}version 2 \(reads 1\.\.2\), mandatory subsection of cpu$/m);
  assert.match(r.out, /xen_virq\s+u16\[24\]\s+since 2, default \[0 × 24\]/);
  assert.match(r.out, /type\s+enum u16 \{closed=0, unbound=1, interdomain=2, pirq=3, virq=4, ipi=5, backend=6\}/);
  assert.match(r.out, /ds\s+struct \(fields as cs\)/);
  assert.equal(Object.keys(current.sections), [
    'cpu',
    'xen_overlay',
    'xen_evtchn',
    'xen_hvm',
    'xenstore',
    'xen_pages',
    'gnttab',
    'xen_memory',
    'irqchip',
    'kvmclock',
    'xen_time',
    'xen_console',
  ]);
});

test('check: the JSON of this build against itself and against a snapshot of it: compatible, exit 0', async () => {
  for (const [o, n] of [
    [p('current.json'), p('current.json')],
    [p('snap.xkvm'), undefined],
    [p('current.json'), p('snap.xkvm')],
  ] as const) {
    const r = await check({ old: o, ...(n ? { new: n } : {}) });
    assert.is(r.status, 0, r.out + r.err);
    assert.match(r.out, /^yes: files written by .* load in /m);
    assert.not.match(r.out, /^no:/m);
  }
});

test('check: a removed field and a changed kind break both ways; a new versioned field only new-in-old', async () => {
  const next = structuredClone(current);
  const overlay = next.sections['xen_overlay']!;
  overlay.fields = overlay.fields.filter((f) => f['name'] !== 'hypercall_page_gpa');
  const time = next.sections['xen_time']!;
  time.fields.find((f) => f['name'] === 'tsc_khz')!['kind'] = 'u64';
  const hvm = next.sections['xen_hvm']!;
  hvm.version = 2;
  hvm.fields.push({ name: 'flags', kind: 'u32', since: 2, default: 0 });
  writeFileSync(p('next.json'), JSON.stringify(next));
  const r = await check({ old: p('current.json'), new: p('next.json') });
  assert.is(r.status, 1, r.err);
  const lines = r.out.trim().split('\n');
  assert.match(lines[0]!, /^no: files written by .*current\.json load in .*next\.json: 2 breaking changes$/);
  assert.ok(lines.includes('  xen_overlay.hypercall_page_gpa: field removed: old files still contain it'), r.out);
  assert.ok(lines.includes('  xen_time.tsc_khz: kind changed from u32 to u64'), r.out);
  assert.ok(
    lines.some((l) => /^no: files written by .*next\.json load in .*current\.json: 3 breaking changes$/.test(l)),
    r.out,
  );
  assert.ok(lines.includes('  xen_hvm: version raised from 1 to 2: old builds read at most 1'), r.out);
  // Only the direction asked for sets the exit status: a new version with a default is fine for old files.
  const hvmOnly = structuredClone(current);
  hvmOnly.sections['xen_hvm'] = hvm;
  writeFileSync(p('hvm.json'), JSON.stringify(hvmOnly));
  assert.is((await check({ old: p('current.json'), new: p('hvm.json'), direction: 'old-in-new' })).status, 0);
  assert.is((await check({ old: p('current.json'), new: p('hvm.json') })).status, 1);
  const j = JSON.parse((await check({ old: p('current.json'), new: p('next.json'), json: true })).out);
  assert.equal([j.compatible, j.oldLoadsInNew, j.newLoadsInOld], [false, false, false]);
  assert.equal(j.oldInNew.map((b: { section: string; path: string }) => `${b.section}.${b.path}`).sort(), [
    'xen_overlay.hypercall_page_gpa',
    'xen_time.tsc_khz',
  ]);
});

test("check: a file holding one section's schema is compared with that section (cpu/xen_vcpu v1 against this build)", async () => {
  const r = await check({ old: V1_SCHEMA });
  assert.is(r.status, 1, r.err);
  assert.match(r.out, /^yes: files written by .*cpu-xen_vcpu-v1\.schema\.json load in this build$/m);
  assert.match(r.out, /^ {2}cpu\/xen_vcpu: version raised from 1 to 2: old builds read at most 1$/m);
  assert.is((await check({ old: V1_SCHEMA, direction: 'old-in-new' })).status, 0);
});

test('check: bad input is one line and exit 2', async () => {
  writeFileSync(p('garbage.json'), '{"sections": ');
  writeFileSync(p('wrong.json'), '{"hello": 1}');
  writeFileSync(
    p('invalid.json'),
    JSON.stringify({
      sections: { x: { name: 'x', version: 1, minVersion: 1, fields: [{ name: 'a', kind: 'u128' }], subsections: [] } },
    }),
  );
  writeFileSync(p('bad.xkvm'), Buffer.from('XENKVM\u0000\u0001garbage-garbage', 'latin1'));
  const cases: Array<[Omit<SchemaCheckArgs, 'out' | 'err'>, RegExp]> = [
    [{ old: p('nosuch.json') }, /cannot read .*no such file/],
    [{ old: p('garbage.json') }, /neither a xenkvm snapshot nor JSON/],
    [{ old: p('wrong.json') }, /not a schema file/],
    [{ old: p('invalid.json') }, /schema of section x is invalid: .*unknown field kind/],
    [{ old: p('bad.xkvm') }, /corrupt|truncated/],
    [{ old: p('current.json'), direction: 'sideways' as 'both' }, /--direction must be/],
  ];
  for (const [args, re] of cases) {
    const r = await check(args);
    assert.is(r.status, 2, JSON.stringify(args));
    assert.is(r.out, '');
    assert.is(r.err.split('\n').filter(Boolean).length, 1, r.err);
    assert.match(r.err, re);
  }
});

test.run();
