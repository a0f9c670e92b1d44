// The tree the toolstack writes for a new domain: the paths, their values,
// and what the guest may do with them under xl's permissions; and the PV
// shutdown handshake through control/shutdown.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CONSOLE_LIMIT, domainTree, writeDomainTree } from '../../../src/xen/xenstore/domain-tree.js';
import { XenstoreServer } from '../../../src/xen/xenstore/server.js';
import { Client } from './xs-client.js';

const OPTS = {
  domid: 3,
  name: 'grub',
  memoryKb: 262144,
  vcpus: 2,
  uuid: '00000000-0000-0000-0000-000000000003',
  store: { port: 1, gfn: 0xfeffc },
  console: { port: 2, gfn: 0xfeffd },
};

function written(): { s: XenstoreServer; d0: Client; g: Client } {
  const s = new XenstoreServer();
  writeDomainTree(s, OPTS);
  s.introduceDomain(3);
  return { s, d0: new Client(s, 0), g: new Client(s, 3) };
}

test('the values a guest finds in its home', () => {
  const { g } = written();
  const expect: Record<string, string> = {
    name: 'grub',
    domid: '3',
    vm: '/vm/00000000-0000-0000-0000-000000000003',
    'memory/static-max': '262144',
    'memory/target': '262144',
    'cpu/0/availability': 'online',
    'cpu/1/availability': 'online',
    'control/shutdown': '',
    'control/feature-poweroff': '',
    'control/platform-feature-xs_reset_watches': '1',
    'control/platform-feature-multiprocessor-suspend': '1',
    'store/port': '1',
    'store/ring-ref': String(0xfeffc),
    'console/port': '2',
    'console/ring-ref': String(0xfeffd),
    'console/limit': String(CONSOLE_LIMIT),
    'console/type': 'xenconsoled',
    'console/output': 'pty',
    'console/backend': '/local/domain/0/backend/console/3/0',
    'console/backend-id': '0',
    'device/suspend/event-channel': '',
  };
  for (const [path, value] of Object.entries(expect)) assert.is(g.read(path), value, path);
  assert.equal(g.ls('cpu'), ['0', '1']);
  assert.equal(g.ls('data'), []);
});

test('permissions as xl sets them: the home is the toolstack’s, the answer nodes are the guest’s', () => {
  const { d0 } = written();
  const perms = (p: string): string[] => d0.perms(`/local/domain/3${p}`);
  assert.equal(perms(''), ['n0', 'r3']);
  assert.equal(perms('/name'), ['n0', 'r3']);
  assert.equal(perms('/memory/target'), ['n0', 'r3']);
  assert.equal(perms('/control'), ['n0', 'r3']);
  assert.equal(perms('/control/platform-feature-xs_reset_watches'), ['n0', 'r3']);
  for (const p of ['/control/shutdown', '/control/feature-poweroff', '/control/sysrq', '/data', '/error', '/attr'])
    assert.equal(perms(p), ['n3'], p);
  assert.equal(perms('/device/suspend/event-channel'), ['n3']);
  assert.equal(perms('/console'), ['n3', 'r0']);
  assert.equal(perms('/console/backend'), ['n3', 'r0']);
  assert.equal(perms('/console/ring-ref'), ['n0', 'r3']);
  assert.equal(d0.perms('/vm/00000000-0000-0000-0000-000000000003'), ['n0', 'r3']);
  assert.equal(d0.perms('/local/domain'), ['n0']);
});

test('what the guest may and may not do in its tree', () => {
  const { g } = written();
  assert.is(g.write('name', 'evil'), 'EACCES');
  assert.is(g.write('memory/target', '1'), 'EACCES');
  assert.is(g.write('console/ring-ref', '0'), 'EACCES');
  assert.is(g.write('newnode', ''), 'EACCES', 'the home itself is read-only to the guest');
  assert.is(g.write('control/shutdown', ''), 'OK');
  assert.is(g.write('control/feature-poweroff', '1'), 'OK');
  assert.is(g.write('data/anything/below', 'v'), 'OK');
  assert.is(g.write('device/suspend/event-channel', '7'), 'OK');
  assert.is(g.write('console/state', '4'), 'OK', 'the frontend directory is the guest’s');
  assert.is(g.read('/local/domain/0'), 'EACCES');
  assert.is(g.read('/vm/00000000-0000-0000-0000-000000000003/name'), 'grub');
});

test('the PV shutdown handshake: the toolstack writes a command, the guest hears of it and acknowledges', () => {
  const { d0, g } = written();
  assert.is(g.watch('control/shutdown', 'shutdown'), 'OK');
  assert.equal(g.events(), [['control/shutdown', 'shutdown']]);
  d0.watch('/local/domain/3/control/shutdown', 'ack');
  d0.events();
  assert.is(d0.write('/local/domain/3/control/shutdown', 'poweroff'), 'OK');
  assert.equal(g.events(), [['control/shutdown', 'shutdown']]);
  assert.is(g.read('control/shutdown'), 'poweroff');
  d0.events();
  assert.is(g.write('control/shutdown', ''), 'OK');
  assert.equal(d0.events(), [['/local/domain/3/control/shutdown', 'ack']]);
});

test('rewriting the tree for the same id starts from scratch; the toolstack’s watchers see one commit', () => {
  const s = new XenstoreServer();
  const d0 = new Client(s, 0);
  writeDomainTree(s, OPTS);
  new Client(s, 3).write('data/left-over', 'x');
  d0.watch('/local/domain/3', 'w');
  d0.events();
  writeDomainTree(s, { domid: 3, name: 'again', memoryKb: 1024, vcpus: 1 });
  assert.is(d0.read('/local/domain/3/data/left-over'), 'ENOENT');
  assert.is(d0.read('/local/domain/3/name'), 'again');
  assert.is(d0.read('/local/domain/3/console/port'), 'ENOENT', 'no console asked for this time');
  assert.ok(d0.events().length > 0);
});

test('domainTree starts at the home and gives absolute paths; console and store only when asked', () => {
  const ops = domainTree(OPTS);
  assert.is(ops[0]!.path, '/local/domain/3');
  assert.ok(ops.every((op) => op.path.startsWith('/')));
  assert.is(new Set(ops.map((op) => op.path)).size, ops.length, 'each path once');
  const bare = domainTree({ domid: 4, name: 'x', memoryKb: 1, vcpus: 0 });
  assert.not.ok(
    bare.some((op) => op.path.includes('/console') || op.path.includes('/store/') || op.path.startsWith('/vm')),
  );
});

test('a tree that cannot be written is refused whole, with the transaction closed', () => {
  const s = new XenstoreServer();
  assert.throws(() => writeDomainTree(s, { ...OPTS, uuid: 'not a uuid' }), /domain 3 failed: EINVAL/);
  assert.is(s.connection(0).transactions.size, 0);
  assert.is(new Client(s, 0).read('/local/domain/3'), 'ENOENT');
});

test.run();
