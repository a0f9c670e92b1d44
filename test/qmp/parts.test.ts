// The small parts under the control socket: argument schemas (values and
// the types they carry), the line splitter's limits, VIRQ names, and a fuzz
// run showing that random bytes never take the server down.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { InputError } from '../../src/errors.js';
import { LineSplitter } from '../../src/qmp/line-splitter.js';
import { qmpTimestamp } from '../../src/qmp/protocol.js';
import { CommandRegistry, errorBodyFor } from '../../src/qmp/registry.js';
import { arg, validateArgs, type ArgsOf } from '../../src/qmp/schema.js';
import { isValidVirq, virqName } from '../../src/xen/evtchn/virq-names.js';
import { RawConn, startServer } from '../helpers/qmp.js';
import { tempDir } from '../helpers/tmp.js';

const schema = {
  file: arg.string({ maxLength: 8 }),
  stop: arg.optional(arg.boolean()),
  level: arg.optional(arg.integer({ min: 0, max: 9 })),
  mode: arg.optional(arg.enum(['fast', 'small'])),
  tags: arg.optional(arg.stringArray({ maxItems: 2 })),
  ratio: arg.optional(arg.number({ min: 0 })),
};

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const typeCheck: Equal<
  ArgsOf<typeof schema>,
  {
    readonly file: string;
    readonly stop?: boolean;
    readonly level?: number;
    readonly mode?: 'fast' | 'small';
    readonly tags?: readonly string[];
    readonly ratio?: number;
  }
> = true;

test('a schema types its arguments (compile-time check) and validates them', () => {
  assert.ok(typeCheck);
  assert.equal(
    { ...validateArgs(schema, { file: 'a', stop: true, level: 9, mode: 'small', tags: ['x'], ratio: 0.5 }) },
    { file: 'a', stop: true, level: 9, mode: 'small', tags: ['x'], ratio: 0.5 },
  );
  assert.equal({ ...validateArgs(schema, { file: '' }) }, { file: '' });
  assert.equal({ ...validateArgs({}, undefined) }, {});
  const bad: Array<[unknown, string]> = [
    [undefined, "Parameter 'file' is missing"],
    [{ file: 'a', extra: 1 }, "Parameter 'extra' is unexpected"],
    [{ file: 'toolongname' }, "Parameter 'file' is longer than 8 characters"],
    [{ file: 'a', stop: 'yes' }, "Parameter 'stop' expects boolean"],
    [{ file: 'a', level: 10 }, "Parameter 'level' must be in 0..9"],
    [{ file: 'a', level: 2 ** 60 }, "Parameter 'level' expects integer"],
    [{ file: 'a', mode: 'slow' }, "Parameter 'mode' expects one of 'fast' | 'small'"],
    [{ file: 'a', tags: ['x', 1] }, "Parameter 'tags' expects an array of strings"],
    [{ file: 'a', tags: ['x', 'y', 'z'] }, "Parameter 'tags' has more than 2 items"],
    [{ file: 'a', ratio: -1 }, "Parameter 'ratio' must be in 0..inf"],
    [{ file: 'a', stop: null }, "Parameter 'stop' expects boolean"],
    [[], "QMP input member 'arguments' must be an object"],
  ];
  for (const [input, message] of bad) {
    try {
      validateArgs(schema, input as never);
      assert.unreachable(JSON.stringify(input));
    } catch (e) {
      assert.instance(e, InputError);
      assert.is((e as Error).message, message);
    }
  }
});

test('the registry refuses bad and duplicate names; error bodies never carry stacks', () => {
  const r = new CommandRegistry();
  assert.throws(() => r.register({ name: 'Bad Name', args: {}, handler: () => {} }), /bad QMP command name/);
  assert.throws(() => r.register({ name: 'query-commands', args: {}, handler: () => {} }), /registered twice/);
  assert.equal(errorBodyFor(new InputError('no')), { class: 'GenericError', desc: 'no' });
  assert.equal(errorBodyFor(new RangeError('boom')), { class: 'GenericError', desc: 'internal error: boom' });
  assert.equal(errorBodyFor('str'), { class: 'GenericError', desc: 'internal error: str' });
});

test('line splitter: lines across chunks, CRLF, the last unterminated line', () => {
  const s = new LineSplitter(16);
  assert.equal(s.push(Buffer.from('ab')), []);
  assert.equal(s.push(Buffer.from('c\nde\r\n\nf')), [
    { kind: 'line', text: 'abc' },
    { kind: 'line', text: 'de' },
    { kind: 'line', text: '' },
  ]);
  assert.equal(s.end(), [{ kind: 'line', text: 'f' }]);
  assert.equal(s.end(), []);
  // Multi-byte characters split between chunks survive.
  const euro = Buffer.from('€\n');
  assert.equal([...s.push(euro.subarray(0, 1)), ...s.push(euro.subarray(1))], [{ kind: 'line', text: '€' }]);
});

test('line splitter: an over-long line is counted, not kept, and reported once', () => {
  const s = new LineSplitter(4);
  assert.equal(s.push(Buffer.from('1234\n12345')), [{ kind: 'line', text: '1234' }]);
  assert.equal(s.push(Buffer.alloc(1000, 0x41)), []);
  assert.equal(s.push(Buffer.from('6\nok\n')), [
    { kind: 'overflow', bytes: 1006 },
    { kind: 'line', text: 'ok' },
  ]);
  s.push(Buffer.from('toolong'));
  assert.equal(s.end(), [{ kind: 'overflow', bytes: 7 }]);
  assert.throws(() => new LineSplitter(0), RangeError);
});

test('VIRQ names follow Xen; unnamed numbers read VIRQ_<n>', () => {
  const expect: Record<number, string> = {
    0: 'VIRQ_TIMER',
    1: 'VIRQ_DEBUG',
    2: 'VIRQ_CONSOLE',
    3: 'VIRQ_DOM_EXC',
    4: 'VIRQ_TBUF',
    5: 'VIRQ_5',
    6: 'VIRQ_DEBUGGER',
    7: 'VIRQ_XENOPROF',
    8: 'VIRQ_CON_RING',
    9: 'VIRQ_PCPU_STATE',
    10: 'VIRQ_MEM_EVENT',
    11: 'VIRQ_ARGO',
    12: 'VIRQ_ENOMEM',
    13: 'VIRQ_XENPMU',
    14: 'VIRQ_14',
    23: 'VIRQ_23',
  };
  for (const [n, name] of Object.entries(expect)) assert.is(virqName(Number(n)), name);
  assert.ok(isValidVirq(0) && isValidVirq(23));
  assert.not.ok(isValidVirq(24) || isValidVirq(-1) || isValidVirq(1.5));
});

test('event timestamps split wall time into seconds and microseconds', () => {
  assert.equal(qmpTimestamp(1_700_000_000_123.456), { seconds: 1_700_000_000, microseconds: 123_456 });
  assert.equal(qmpTimestamp(0), { seconds: 0, microseconds: 0 });
});

test('fuzz: random bytes and mangled requests never stop the server', async () => {
  const { dir, cleanup } = tempDir('qmp');
  const { server, path, errors } = await startServer(dir, new CommandRegistry(), { limits: { maxLineBytes: 4096 } });
  const seeds = [
    '{"execute":"query-commands","id":1}',
    '{"execute":"qmp_capabilities"}',
    '{"execute":"x","arguments":{"a":[1,{"b":null}]}}',
  ];
  try {
    for (let round = 0; round < 20; round++) {
      const c = await RawConn.open(path);
      await c.next();
      let junk = '';
      for (let i = 0; i < 50; i++) {
        const seed = seeds[i % seeds.length]!;
        const cut = (round * 7 + i * 13) % seed.length;
        junk +=
          i % 3 === 0
            ? randomBytes(64).toString('latin1')
            : `${seed.slice(0, cut)}${randomBytes(3).toString('hex')}${seed.slice(cut)}`;
        junk += '\n';
      }
      c.send(junk);
      if (round % 2 === 0) c.destroy();
      else c.socket.end();
    }
    await new Promise((r) => setTimeout(r, 50));
    const ok = await RawConn.ready(path);
    assert.equal(await ok.call('query-commands', undefined, 'alive'), {
      return: [{ name: 'query-commands' }],
      id: 'alive',
    });
    ok.destroy();
    assert.equal(errors, []);
  } finally {
    await server.destroy();
    cleanup();
  }
});

test.run();
