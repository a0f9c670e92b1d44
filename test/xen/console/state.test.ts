// The xen_console section: a backend's queue, log and counters survive
// encode, decode and restore; a hostile section is refused by its check;
// and the console-read/console-write commands against a fake target.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConsoleService } from '../../../src/xen/console/service.js';
import {
  CHUNK,
  checkConsole,
  initialConsoleState,
  restoreConsole,
  saveConsole,
  xenConsoleState,
  type XenConsoleState,
} from '../../../src/xen/console/state.js';
import { decodeState, encodeState } from '../../../src/vmstate/index.js';
import { CommandRegistry } from '../../../src/qmp/registry.js';
import { registerConsoleCommands } from '../../../src/machine/console-commands.js';
import { ConsoleLog } from '../../../src/xen/console/log.js';

const bytes = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

test('save, encode, decode, check, restore: the same queue, log and counters', () => {
  const s = new ConsoleService();
  s.record(bytes(70_000, 1));
  s.queueInput(bytes(1000, 2));
  s.outTotal = 123_456;
  s.inTotal = 789;
  const st = decodeState(xenConsoleState, encodeState(xenConsoleState, saveConsole(s))) as XenConsoleState;
  checkConsole(st);
  const r = new ConsoleService();
  restoreConsole(r, st);
  assert.equal(r.pendingInput, bytes(1000, 2));
  assert.equal(r.log.contents(), s.log.contents());
  assert.is(r.log.total, 70_000);
  assert.is(r.outTotal, 123_456);
  assert.is(r.inTotal, 789);
  checkConsole(initialConsoleState());
});

test('check refuses what restore must not trust', () => {
  const bad: Array<[string, (st: XenConsoleState) => void, RegExp]> = [
    ['too long', (st) => (st.pending_len = 20_000), /pending_len 20000 is more than 16384/],
    ['chunks disagree', (st) => (st.log_len = 5 * CHUNK), /needs 5 chunks/],
    ['padding', (st) => (st.pending[0]![100] = 1), /not zero/],
    ['counter', (st) => (st.out_total = 2n ** 60n), /beyond 2\^53/],
    ['log total', (st) => (st.log_total = 1n), /less than/],
  ];
  for (const [what, edit, re] of bad) {
    const s = new ConsoleService();
    s.record(bytes(300));
    s.queueInput(bytes(10));
    const st = saveConsole(s);
    edit(st);
    assert.throws(() => checkConsole(st), re, what);
  }
});

test('console-read follows the log with a cursor and waits; console-write answers what was taken', async () => {
  const log = new ConsoleLog(100);
  let wake: () => void = () => {};
  const written: Uint8Array[] = [];
  const reg = new CommandRegistry();
  registerConsoleCommands(reg, {
    hasRing: () => true,
    read: (c) => log.since(c),
    whenOutput: (ms) => new Promise((r) => ((wake = r), setTimeout(r, ms))),
    write: (b) => (written.push(b), Math.min(b.length, 4)),
  });
  const ctx = { signal: new AbortController().signal, afterReply: () => {}, enterCommandMode: () => {} };
  const run = (name: string, args: object) => reg.lookup(name)!.run(args as never, ctx);
  log.append(new TextEncoder().encode('grub> '));
  assert.equal(await run('console-read', {}), { data: 'Z3J1Yj4g', cursor: 6, lost: 0, ring: true });
  const pending = run('console-read', { cursor: 6, 'wait-ms': 5000 });
  log.append(new TextEncoder().encode('x'));
  wake();
  assert.equal(await pending, { data: 'eA==', cursor: 7, lost: 0, ring: true });
  assert.equal(await run('console-write', { data: 'aGVsbG8=' }), { accepted: 4 });
  assert.equal(Buffer.from(written[0]!).toString(), 'hello');
  try {
    await run('console-write', { data: 'not base64!' });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /not base64/);
  }
});

test.run();
