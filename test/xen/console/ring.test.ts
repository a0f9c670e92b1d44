// The PV console ring (xen/console/ring.ts), the console log and the backend
// core (service.ts), played against a page the test writes as a guest would,
// hostile indexes included; and the ring layout against Xen's installed
// <xen/io/console.h> through a compiled offsetof probe.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONSOLE_IN_OFFSET,
  CONSOLE_IN_SIZE,
  CONSOLE_INTERFACE_SIZE,
  CONSOLE_OUT_OFFSET,
  CONSOLE_OUT_SIZE,
  ConsoleIndex,
  ConsoleRing,
  isRingFault,
} from '../../../src/xen/console/ring.js';
import { ConsoleLog } from '../../../src/xen/console/log.js';
import { ConsoleService, MAX_OUTPUT_PER_PASS, PENDING_INPUT_MAX } from '../../../src/xen/console/service.js';
import { gccMissing, parseProbe, runC } from '../../helpers/gcc-probe.js';

const missing = gccMissing(['stdint.h', 'xen/io/console.h']);
if (missing) console.log(`  skip console.h probe: ${missing} (apt-get install libxen-dev)`);

(missing ? test.skip : test)('the ring layout matches <xen/io/console.h>', () => {
  const fields = ['in', 'out', 'in_cons', 'in_prod', 'out_cons', 'out_prod'];
  const src = [
    '#include <stddef.h>',
    '#include <stdint.h>',
    '#include <stdio.h>',
    '#include <xen/io/console.h>',
    'int main(void) {',
    'printf("size %zu\\n", sizeof(struct xencons_interface));',
    ...fields.map(
      (f) =>
        `printf("${f} %zu %zu\\n", offsetof(struct xencons_interface, ${f}), sizeof(((struct xencons_interface *)0)->${f}));`,
    ),
    'return 0; }',
  ].join('\n');
  const got = parseProbe(runC(src));
  assert.equal(got.get('size'), [CONSOLE_INTERFACE_SIZE]);
  assert.equal(got.get('in'), [CONSOLE_IN_OFFSET, CONSOLE_IN_SIZE]);
  assert.equal(got.get('out'), [CONSOLE_OUT_OFFSET, CONSOLE_OUT_SIZE]);
  for (const f of ['in_cons', 'in_prod', 'out_cons', 'out_prod'] as const)
    assert.equal(got.get(f), [ConsoleIndex[f], 4], f);
});

/** A guest's view of the page: it produces output and consumes input. */
class Guest {
  readonly dv: DataView;
  constructor(readonly page: Uint8Array) {
    this.dv = new DataView(page.buffer, page.byteOffset, page.length);
  }
  get(i: keyof typeof ConsoleIndex): number {
    return this.dv.getUint32(ConsoleIndex[i], true);
  }
  set(i: keyof typeof ConsoleIndex, v: number): void {
    this.dv.setUint32(ConsoleIndex[i], v >>> 0, true);
  }
  /** Writes what fits of `bytes` into out[]; returns how many. */
  write(bytes: Uint8Array): number {
    let prod = this.get('out_prod');
    const cons = this.get('out_cons');
    let n = 0;
    while (n < bytes.length && (prod - cons) >>> 0 < CONSOLE_OUT_SIZE) {
      this.page[CONSOLE_OUT_OFFSET + (prod & (CONSOLE_OUT_SIZE - 1))] = bytes[n++]!;
      prod = (prod + 1) >>> 0;
    }
    this.set('out_prod', prod);
    return n;
  }
  read(): Uint8Array {
    let cons = this.get('in_cons');
    const prod = this.get('in_prod');
    const out: number[] = [];
    while (cons !== prod) {
      out.push(this.page[CONSOLE_IN_OFFSET + (cons & (CONSOLE_IN_SIZE - 1))]!);
      cons = (cons + 1) >>> 0;
    }
    this.set('in_cons', cons);
    return Uint8Array.from(out);
  }
}

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);
const pattern = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

function setup(start = 0) {
  const page = new Uint8Array(4096);
  const g = new Guest(page);
  for (const i of Object.keys(ConsoleIndex) as (keyof typeof ConsoleIndex)[]) g.set(i, start);
  return { page, g, ring: new ConsoleRing(page) };
}

test('output: what the guest wrote comes out once, in order, and frees its space', () => {
  const { g, ring } = setup();
  g.write(text('hello'));
  assert.is(str(ring.takeOutput(100) as Uint8Array), 'hello');
  assert.is(g.get('out_cons'), 5);
  assert.is((ring.takeOutput(100) as Uint8Array).length, 0);
});

test('output and input wrap around the ring and the 32-bit indexes', () => {
  for (const start of [0, 2000, 0xffff_ff00]) {
    const { g, ring } = setup(start);
    for (let round = 0; round < 5; round++) {
      const msg = pattern(1500, round);
      assert.is(g.write(msg), 1500);
      assert.equal(ring.takeOutput(10_000), msg, `out start ${start} round ${round}`);
      const inp = pattern(700, round + 50);
      assert.is(ring.putInput(inp), 700);
      assert.equal(g.read(), inp, `in start ${start} round ${round}`);
    }
  }
});

test('input: only what fits goes in; a full ring takes nothing', () => {
  const { g, ring } = setup();
  assert.is(ring.putInput(pattern(1000)), 1000);
  assert.is(ring.putInput(pattern(100)), 24);
  assert.is(ring.putInput(pattern(5)), 0);
  assert.is(g.read().length, CONSOLE_IN_SIZE);
  assert.is(ring.putInput(pattern(5)), 5);
});

test('takeOutput takes at most what it is asked for', () => {
  const { g, ring } = setup();
  g.write(pattern(300));
  assert.equal(ring.takeOutput(100), pattern(300).subarray(0, 100));
  assert.is(g.get('out_cons'), 100);
});

test('hostile indexes: nothing read or written outside the ring, no index moved', () => {
  const cases: Array<[number, number]> = [
    [0, CONSOLE_OUT_SIZE + 1],
    [100, 50], // cons ahead of prod
    [0, 0xffff_ffff],
    [0x8000_0000, 0],
  ];
  for (const [cons, prod] of cases) {
    const { page, g, ring } = setup();
    page.fill(0xaa, CONSOLE_INTERFACE_SIZE);
    g.set('out_cons', cons);
    g.set('out_prod', prod);
    const r = ring.takeOutput(1 << 20);
    assert.ok(isRingFault(r), `out ${cons}/${prod}`);
    assert.is(g.get('out_cons'), cons >>> 0);
    g.set('in_cons', cons);
    g.set('in_prod', prod);
    const w = ring.putInput(pattern(10));
    assert.ok(isRingFault(w) || (prod - cons) >>> 0 <= CONSOLE_IN_SIZE, `in ${cons}/${prod}`);
    assert.is(g.get('in_prod'), prod >>> 0);
    assert.ok(
      page.subarray(CONSOLE_INTERFACE_SIZE).every((b) => b === 0xaa),
      'bytes after the interface untouched',
    );
  }
  // Exactly full is not hostile.
  const { g, ring } = setup();
  g.set('out_prod', CONSOLE_OUT_SIZE);
  assert.is((ring.takeOutput(1 << 20) as Uint8Array).length, CONSOLE_OUT_SIZE);
});

test('the ring refuses a page too small', () => {
  assert.throws(() => new ConsoleRing(new Uint8Array(100)), /3088/);
});

test('log: keeps the newest bytes and tells a late reader what it missed', () => {
  const log = new ConsoleLog(10);
  log.append(text('abcdef'));
  assert.equal(str(log.since(0).data), 'abcdef');
  log.append(text('ghijkl'));
  const r = log.since(0);
  assert.is(str(r.data), 'cdefghijkl');
  assert.is(r.lost, 2);
  assert.is(r.cursor, 12);
  assert.is(str(log.since(10).data), 'kl');
  assert.is(log.since(99).data.length, 0);
  log.append(pattern(25));
  assert.equal(log.contents(), pattern(25).subarray(15));
  assert.is(log.total, 37);
  log.load(text('xyz'), 1000);
  assert.is(str(log.since(999).data), 'z');
  assert.is(log.since(0).lost, 997);
});

test('service: a burst larger than the ring arrives whole over several passes', () => {
  const { g, ring } = setup(0xffff_f000);
  const s = new ConsoleService();
  const burst = pattern(10_000, 3);
  const got: Uint8Array[] = [];
  let sent = 0;
  while (sent < burst.length) {
    sent += g.write(burst.subarray(sent));
    const r = s.pass(ring);
    assert.ok(r.moved);
    got.push(r.output);
  }
  assert.equal(Buffer.concat(got), Buffer.from(burst));
  assert.is(s.outTotal, 10_000);
  assert.equal(s.log.since(0).data, burst);
});

test('service: one pass takes at most its budget from a guest that keeps writing', () => {
  // A ring that always looks full: the guest refills it as fast as it is read.
  const { g, ring } = setup();
  const s = new ConsoleService();
  const realTake = ring.takeOutput.bind(ring);
  ring.takeOutput = (max: number) => {
    g.write(pattern(CONSOLE_OUT_SIZE));
    return realTake(max);
  };
  const r = s.pass(ring);
  assert.is(r.output.length, MAX_OUTPUT_PER_PASS);
});

test('service: input waits in a bounded queue until the guest reads', () => {
  const { g, ring } = setup();
  const s = new ConsoleService();
  assert.is(s.queueInput(pattern(PENDING_INPUT_MAX + 500)), PENDING_INPUT_MAX);
  assert.is(s.queueInput(pattern(1)), 0);
  let r = s.pass(ring);
  assert.is(r.delivered, CONSOLE_IN_SIZE);
  assert.is(s.pendingInput.length, PENDING_INPUT_MAX - CONSOLE_IN_SIZE);
  r = s.pass(ring);
  assert.is(r.delivered, 0, 'the guest has not read: nothing more goes in');
  assert.not.ok(r.moved);
  const seen = [g.read()];
  while (s.pendingInput.length > 0) {
    s.pass(ring);
    seen.push(g.read());
  }
  assert.equal(Buffer.concat(seen), Buffer.from(pattern(PENDING_INPUT_MAX)));
  assert.is(s.inTotal, PENDING_INPUT_MAX);
});

test('service: a broken ring is reported once per direction and served again once repaired', () => {
  const { g, ring } = setup();
  const s = new ConsoleService();
  s.queueInput(text('x'));
  g.set('out_prod', 5000);
  g.set('in_cons', 3000);
  let r = s.pass(ring);
  assert.equal(
    r.faults.map((f) => f.direction),
    ['out', 'in'],
  );
  r = s.pass(ring);
  assert.is(r.faults.length, 0, 'logged once');
  g.set('out_prod', 3);
  g.set('in_cons', 0);
  r = s.pass(ring);
  assert.is(r.output.length, 3);
  assert.is(r.delivered, 1);
});

test.run();
