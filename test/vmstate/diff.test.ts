import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diffStates } from '../../src/vmstate/index.js';

const a = {
  regs: { rax: 1n, rip: 0x1000n },
  tsc: 5n,
  kvmclock: { clock: 10n, flags: 0 },
  xsave: new Uint8Array(16),
  xen_vcpu: { xen_virq: [0, 0, 0], xen_singleshot_timer_ns: 0n },
  cpus: [{ tsc: 1n }, { tsc: 2n }],
};
const b = structuredClone(a);
b.regs.rip = 0x1004n;
b.tsc = 6n;
b.kvmclock.clock = 11n;
b.xen_vcpu.xen_virq[0] = 5;
b.xsave.set([1, 2, 3], 4);
b.xsave[10] = 9;
b.cpus[1]!.tsc = 3n;

test('equal states have no changes', () => {
  assert.equal(diffStates(a, structuredClone(a)), []);
});

test('field-level changes in declaration order with full paths', () => {
  assert.equal(
    diffStates(a, b).map((c) => c.path),
    ['regs.rip', 'tsc', 'kvmclock.clock', 'xsave[4..6]', 'xsave[10]', 'xen_vcpu.xen_virq[0]', 'cpus[1].tsc'],
  );
  const c = diffStates(a, b).find((x) => x.path === 'xen_vcpu.xen_virq[0]');
  assert.equal(c, { path: 'xen_vcpu.xen_virq[0]', a: 0, b: 5 });
  assert.equal([...(diffStates(a, b)[3]!.b as Uint8Array)], [1, 2, 3]);
});

test('ignore patterns match prefixes at segment ends and globs', () => {
  const paths = diffStates(a, b, { ignore: ['*.tsc', 'kvmclock.clock', 'xsave', 'tsc'] }).map((c) => c.path);
  assert.equal(paths, ['regs.rip', 'xen_vcpu.xen_virq[0]']);
  // A prefix only matches whole segments.
  assert.equal(diffStates({ tsc_deadline: 1 }, { tsc_deadline: 2 }, { ignore: ['tsc'] }).length, 1);
  assert.equal(
    diffStates(a, b, { ignore: ['xen_vcpu'] }).some((c) => c.path.startsWith('xen_vcpu')),
    false,
  );
});

test('shape changes are reported whole: present vs absent, different lengths', () => {
  assert.equal(diffStates({ s: undefined, l: [1] }, { s: { x: 1 }, l: [1, 2] }), [
    { path: 's', a: undefined, b: { x: 1 } },
    { path: 'l', a: [1], b: [1, 2] },
  ]);
});

test.run();
