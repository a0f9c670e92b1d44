// The xenstore request processor: every operation with its success and its
// errors as Xen's xenstored gives them (docs/misc/xenstore.txt and the C
// daemon), permissions, watches, transactions and quotas.  No KVM, no ring.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../../src/errors.js';
import { XS_LIMITS } from '../../../src/xen/xenstore/quota.js';
import { XenstoreServer } from '../../../src/xen/xenstore/server.js';
import { DOMID_SELF, PAYLOAD_MAX, XsType, stringToBytes } from '../../../src/xen/xenstore/wire.js';
import { Client } from './xs-client.js';

/** A server, the toolstack's client, and guest 5 whose home it owns (as a writable home for tests). */
function setup(quotas = {}): { s: XenstoreServer; d0: Client; g: Client; g7: Client } {
  const s = new XenstoreServer({ quotas });
  const d0 = new Client(s, 0);
  assert.is(d0.mkdir('/local/domain/5'), 'OK');
  assert.is(d0.setPerms('/local/domain/5', ['n5']), 'OK');
  s.introduceDomain(5);
  d0.events();
  return { s, d0, g: new Client(s, 5), g7: new Client(s, 7) };
}

// ---- tree operations ----

test('a fresh daemon holds /, /tool, /tool/xenstored and the special nodes, all owned by 0', () => {
  const s = new XenstoreServer();
  const d0 = new Client(s, 0);
  assert.equal(d0.ls('/'), ['tool']);
  assert.equal(d0.ls('/tool'), ['xenstored']);
  assert.is(d0.read('/tool/xenstored'), '');
  assert.equal(d0.perms('/'), ['n0']);
  assert.equal(d0.perms('@releaseDomain'), ['n0']);
  assert.equal(d0.perms('@introduceDomain'), ['n0']);
  assert.is(s.store.ownedBy(0), 5);
});

test('WRITE stores bytes (NULs included), creates missing parents empty, and replaces a value', () => {
  const { d0 } = setup();
  assert.is(d0.write('/a/b/c', 'x\0y'), 'OK');
  assert.is(d0.read('/a/b/c'), 'x\0y');
  assert.is(d0.read('/a'), '');
  assert.is(d0.read('/a/b'), '');
  assert.equal(d0.ls('/a'), ['b']);
  assert.is(d0.write('/a/b/c', 'z'), 'OK');
  assert.is(d0.read('/a/b/c'), 'z');
  assert.is(d0.write('/a/b/d', ''), 'OK');
  assert.equal(d0.ls('/a/b'), ['c', 'd'], 'children in creation order');
  assert.equal(d0.ls('/a/b/c'), []);
});

test('MKDIR creates a node and its parents, and leaves an existing value alone', () => {
  const { d0 } = setup();
  assert.is(d0.mkdir('/m/n'), 'OK');
  assert.is(d0.read('/m/n'), '');
  assert.is(d0.write('/m/n', 'v'), 'OK');
  assert.is(d0.mkdir('/m/n'), 'OK');
  assert.is(d0.read('/m/n'), 'v');
  assert.is(d0.mkdir('/'), 'OK');
});

test('RM removes a whole subtree; an absent node is fine when its parent exists', () => {
  const { d0 } = setup();
  d0.write('/r/a/b', '1');
  d0.write('/r/a/c', '2');
  d0.write('/r/z', '3');
  assert.is(d0.rm('/r/a'), 'OK');
  assert.is(d0.read('/r/a/b'), 'ENOENT');
  assert.is(d0.read('/r/a'), 'ENOENT');
  assert.equal(d0.ls('/r'), ['z']);
  assert.is(d0.rm('/r/a'), 'OK', 'already gone, parent exists');
  assert.is(d0.rm('/r/a/b'), 'ENOENT', 'parent absent too');
  assert.is(d0.rm('/'), 'EINVAL');
});

test('READ, DIRECTORY and GET_PERMS of an absent node give ENOENT', () => {
  const { d0 } = setup();
  assert.is(d0.read('/nope'), 'ENOENT');
  assert.equal(d0.ls('/nope'), ['ENOENT']);
  assert.equal(d0.perms('/nope'), ['ENOENT']);
  assert.equal(d0.perms('@nope'), ['ENOENT']);
});

test('paths: relative ones are below /local/domain/<id>; bad characters, slashes and @ are EINVAL', () => {
  const { d0, g } = setup();
  assert.is(g.write('rel/x', '1'), 'OK');
  assert.is(d0.read('/local/domain/5/rel/x'), '1');
  assert.is(d0.write('rel0', 'z'), 'OK');
  assert.is(d0.read('/local/domain/0/rel0'), 'z');
  for (const bad of ['', '/a//b', '/a/', '/a b', '/a.b', '/ä', 'x/', '@special', '/a\x01']) {
    assert.is(d0.read(bad), 'EINVAL', JSON.stringify(bad));
    assert.is(d0.write(bad, 'v'), 'EINVAL', JSON.stringify(bad));
  }
  assert.is(d0.write('/ok-_@Z9', 'v'), 'OK', 'the allowed punctuation');
  assert.is(d0.rm('@releaseDomain'), 'EINVAL');
});

test('path length: absolute paths up to 3072, and an unprivileged domain up to 2048 below its home', () => {
  const { d0, g } = setup();
  const abs = `/${'a'.repeat(3071)}`;
  assert.is(d0.write(abs, ''), 'OK');
  assert.is(d0.write(`${abs}b`, ''), 'EINVAL');
  // Short components: a long name would make its parent's child list outgrow the node-size quota.
  const long = `${Array.from({ length: 32 }, () => 'a'.repeat(63)).join('/')}b`;
  assert.is(long.length, 2048);
  assert.is(g.write(long, ''), 'OK');
  assert.is(g.write(`${long}c`, ''), 'EINVAL');
  assert.is(g.write('c'.repeat(2049), ''), 'EINVAL');
  assert.is(g.read(`/local/domain/5/${'c'.repeat(2049)}`), 'EINVAL', 'absolute spelling counts the same');
  assert.is(d0.write(`/local/domain/5/${'d'.repeat(2049)}`, ''), 'OK', 'the toolstack has no such quota');
});

test('malformed payloads: a missing or extra NUL is EINVAL; unknown types ENOSYS; unknown tx ENOENT', () => {
  const { d0, g } = setup();
  assert.is(d0.req(XsType.READ, stringToBytes('/tool')).err, 'EINVAL');
  assert.is(d0.req(XsType.READ, ['/tool', 'x']).err, 'EINVAL');
  assert.is(d0.req(XsType.READ, new Uint8Array(0)).err, 'EINVAL');
  assert.is(d0.req(XsType.WRITE, stringToBytes('/no-nul')).err, 'EINVAL');
  assert.is(d0.req(XsType.MKDIR, stringToBytes('/x')).err, 'EINVAL');
  for (const t of [20, XsType.WATCH_EVENT, XsType.ERROR, 23, 0xffff, 0xffffffff]) {
    assert.is(d0.req(t, ['x']).err, 'ENOSYS', `type ${t}`);
    assert.is(g.req(t, ['x']).err, 'ENOSYS', `type ${t} from a guest`);
  }
  assert.is(d0.req(XsType.READ, ['/tool'], 99).err, 'ENOENT', 'no such transaction');
  assert.is(d0.req(XsType.DIRECTORY_PART, ['/tool']).err, 'EINVAL');
});

test('an error reply echoes req_id and tx_id, and its payload is the name with a NUL', () => {
  const s = new XenstoreServer();
  const { reply } = s.handle(0, { type: XsType.READ, reqId: 42, txId: 0, payload: stringToBytes('/x\0') });
  assert.equal(reply, { type: XsType.ERROR, reqId: 42, txId: 0, payload: stringToBytes('ENOENT\0') });
  assert.is(s.take(0).length, 1, 'queued for the connection by default');
});

// ---- permissions ----

test('permissions: the owner and domain 0 may do anything; others get the listed or the default bits', () => {
  const { d0, g, g7 } = setup();
  d0.write('/p/x', 'secret');
  assert.is(g.read('/p/x'), 'EACCES');
  assert.is(g.write('/p/x', 'v'), 'EACCES');
  assert.is(d0.setPerms('/p/x', ['n0', 'r5']), 'OK');
  assert.is(g.read('/p/x'), 'secret');
  assert.is(g.write('/p/x', 'v'), 'EACCES');
  assert.is(g7.read('/p/x'), 'EACCES');
  assert.is(d0.setPerms('/p/x', ['r0', 'w5']), 'OK');
  assert.is(g7.read('/p/x'), 'secret', 'others get the owner entry bits');
  assert.is(g.read('/p/x'), 'EACCES', 'a listed domain gets exactly its bits');
  assert.is(g.write('/p/x', 'v'), 'OK');
  assert.is(d0.setPerms('/p/x', ['b0']), 'OK');
  assert.is(g7.write('/p/x', 'w'), 'OK');
});

test('an absent node under a parent the caller may not use gives EACCES, not ENOENT', () => {
  const { d0, g } = setup();
  d0.mkdir('/hidden');
  assert.is(g.read('/hidden/none'), 'EACCES');
  assert.is(g.read('/hidden/a/b/none'), 'EACCES', 'the nearest existing parent decides');
  assert.is(g.write('/hidden/new', 'v'), 'EACCES');
  assert.is(g.rm('/hidden/none'), 'EACCES');
  d0.setPerms('/hidden', ['n0', 'r5']);
  assert.is(g.read('/hidden/none'), 'ENOENT');
  assert.is(g.write('/hidden/new', 'v'), 'EACCES', 'creating needs write on the parent');
});

test('nodes created by a guest are owned by it and inherit the other entries; the toolstack inherits all', () => {
  const { d0, g, g7 } = setup();
  d0.setPerms('/local/domain/5', ['n5', 'r7']);
  assert.is(g.write('data/a/b', '1'), 'OK');
  assert.equal(d0.perms('/local/domain/5/data/a'), ['n5', 'r7']);
  assert.equal(d0.perms('/local/domain/5/data/a/b'), ['n5', 'r7']);
  assert.is(g7.read('/local/domain/5/data/a/b'), '1');
  d0.mkdir('/t');
  d0.setPerms('/t', ['n3', 'b5']);
  assert.is(g.write('/t/x', 'v'), 'OK');
  assert.equal(d0.perms('/t/x'), ['n5', 'b5'], 'the creator replaces the owner');
  assert.is(d0.write('/t/y', 'v'), 'OK');
  assert.equal(d0.perms('/t/y'), ['n3', 'b5'], 'domain 0 keeps the inherited owner');
});

test('SET_PERMS: only the owner (or 0); a guest cannot give a node away; bad lists are EINVAL', () => {
  const { d0, g, g7 } = setup();
  g.write('mine', 'v');
  assert.is(g.setPerms('mine', ['n5', 'r7']), 'OK');
  assert.equal(g.perms('mine'), ['n5', 'r7']);
  assert.is(g7.read('/local/domain/5/mine'), 'v');
  assert.is(g7.setPerms('/local/domain/5/mine', ['n7']), 'EACCES', 'not the owner');
  assert.is(g.setPerms('mine', ['n7']), 'EPERM');
  assert.is(d0.setPerms('/local/domain/5/mine', ['n7']), 'OK', 'the toolstack may');
  assert.is(g.setPerms('mine', ['n5']), 'EACCES', 'no longer the owner');
  for (const bad of [['x5'], ['r'], ['r70000'], ['r-1'], ['5'], ['r5x'], ['']]) {
    assert.is(d0.setPerms('/local/domain/5/mine', bad), 'EINVAL', JSON.stringify(bad));
  }
  assert.is(d0.req(XsType.SET_PERMS, ['/local/domain/5/mine']).err, 'EINVAL', 'no permission at all');
  assert.is(d0.setPerms('/nope', ['n0']), 'ENOENT');
  assert.is(d0.setPerms('@releaseDomain', ['n0', 'r5']), 'OK', 'special nodes have permissions too');
  assert.equal(d0.perms('@releaseDomain'), ['n0', 'r5']);
});

test('domain-0-only requests are EACCES for a guest', () => {
  const { g } = setup();
  for (const t of [
    XsType.CONTROL,
    XsType.INTRODUCE,
    XsType.RELEASE,
    XsType.RESUME,
    XsType.SET_TARGET,
    XsType.IS_DOMAIN_INTRODUCED,
  ]) {
    assert.is(g.req(t, ['5']).err, 'EACCES', `type ${t}`);
  }
});

// ---- watches ----

test('WATCH fires once straight away, after its reply, with the path as given', () => {
  const { s, g } = setup();
  const { reply } = s.handle(5, { type: XsType.WATCH, reqId: 9, txId: 0, payload: stringToBytes('data\0tok\0') });
  assert.is(reply.type, XsType.WATCH);
  const q = s.take(5);
  assert.equal(
    q.map((m) => [m.type, m.reqId]),
    [
      [XsType.WATCH, 9],
      [XsType.WATCH_EVENT, 0],
    ],
  );
  assert.equal(q[1]!.payload, stringToBytes('data\0tok\0'));
  assert.is(g.watch('/local/domain/5/abs', 't2'), 'OK');
  assert.equal(g.events(), [['/local/domain/5/abs', 't2']]);
});

test('a change fires watches on the node and on its parents; relative watches see relative paths', () => {
  const { d0, g } = setup();
  g.watch('data', 'rel');
  g.watch('/local/domain/5/data/x', 'abs');
  g.watch('/local/domain/5/other', 'other');
  g.events();
  assert.is(d0.write('/local/domain/5/data/x/y', '1'), 'OK');
  assert.equal(g.events(), [
    ['data/x/y', 'rel'],
    ['/local/domain/5/data/x/y', 'abs'],
  ]);
  d0.watch('/', 'root');
  d0.events();
  g.write('data/z', '2');
  assert.equal(d0.events(), [['/local/domain/5/data/z', 'root']]);
  assert.equal(g.events(), [['data/z', 'rel']]);
});

test('events: MKDIR of an existing node fires nothing; SET_PERMS fires; an identical pending event is sent once', () => {
  const { d0, g } = setup();
  g.write('w', '');
  g.watch('w', 't');
  g.events();
  assert.is(g.mkdir('w'), 'OK');
  assert.equal(g.events(), []);
  g.setPerms('w', ['n5', 'r7']);
  assert.equal(g.events(), [['w', 't']]);
  d0.write('/local/domain/5/w', '1');
  d0.write('/local/domain/5/w', '2');
  assert.equal(g.events(), [['w', 't']], 'not yet read: one event says it');
});

test('RM fires the removed node and its parents, and each removed node watched exactly, children first', () => {
  const { d0 } = setup();
  d0.write('/q/a/b/c', '1');
  d0.write('/q/a/d', '2');
  d0.watch('/q', 'parent');
  d0.watch('/q/a/b/c', 'deep');
  d0.watch('/q/a/d', 'd');
  d0.watch('/q/a/b/c/e', 'absent');
  d0.events();
  assert.is(d0.rm('/q/a'), 'OK');
  assert.equal(d0.events(), [
    ['/q/a/b/c', 'deep'],
    ['/q/a/d', 'd'],
    ['/q/a', 'parent'],
  ]);
});

test('watch events need read permission on the node or its parent (or on the permissions before a change)', () => {
  const { d0, g } = setup();
  d0.mkdir('/w');
  d0.setPerms('/w', ['n0', 'r5']);
  d0.write('/w/open', '');
  d0.write('/w/closed/deep', '');
  d0.setPerms('/w/closed', ['n0']);
  d0.setPerms('/w/closed/deep', ['n0']);
  g.watch('/w', 'all');
  g.events();
  d0.write('/w/open', '1');
  d0.write('/w/closed', '1');
  d0.write('/w/closed/deep', '1');
  assert.equal(
    g.events(),
    [
      ['/w/open', 'all'],
      ['/w/closed', 'all'],
    ],
    'the parent of closed is readable; deep is not, nor its parent',
  );
  d0.setPerms('/w/open', ['n0']);
  assert.equal(g.events(), [['/w/open', 'all']], 'losing access is still heard of (old permissions)');
});

test('WATCH errors: EEXIST for the same path and token, EINVAL for bad arguments; UNWATCH removes or ENOENT', () => {
  const { g } = setup();
  assert.is(g.watch('data', 't'), 'OK');
  assert.is(g.watch('data', 't'), 'EEXIST');
  assert.is(g.watch('/local/domain/5/data', 't'), 'EEXIST', 'the same watch spelled absolutely');
  assert.is(g.watch('data', 'u'), 'OK', 'another token');
  assert.is(g.req(XsType.WATCH, ['data']).err, 'EINVAL');
  assert.is(g.req(XsType.WATCH, ['data', 't', '']).err, 'EINVAL');
  assert.is(g.watch('bad//path', 'x'), 'EINVAL');
  assert.is(g.unwatch('data', 't'), 'OK');
  assert.is(g.unwatch('data', 't'), 'ENOENT');
  assert.is(g.req(XsType.UNWATCH, ['data']).err, 'EINVAL');
  assert.is(g.req(XsType.WATCH, ['x', 'y'], 12345).err, null, 'the tx_id of WATCH is ignored');
});

test('special watches: @introduceDomain and @releaseDomain fire for domain 0, for a guest only if permitted', () => {
  const { s, d0, g } = setup();
  d0.watch('@introduceDomain', 'in');
  d0.watch('@releaseDomain', 'out');
  g.watch('@releaseDomain', 'gout');
  d0.events();
  assert.equal(g.events(), [['@releaseDomain', 'gout']], 'the first event always comes');
  s.introduceDomain(9);
  s.releaseDomain(9);
  assert.equal(d0.events(), [
    ['@introduceDomain', 'in'],
    ['@releaseDomain', 'out'],
  ]);
  assert.equal(g.events(), [], 'the special nodes are n0');
  d0.setPerms('@releaseDomain', ['n0', 'r5']);
  assert.equal(g.events(), [['@releaseDomain', 'gout']], 'the permission change itself, now readable');
  s.introduceDomain(9);
  s.releaseDomain(9);
  assert.equal(g.events(), [['@releaseDomain', 'gout']]);
  d0.write('/anything', 'v');
  assert.equal(g.events(), [], 'a special watch matches only its special event');
});

test('RESET_WATCHES drops the caller’s watches and transactions only', () => {
  const { d0, g } = setup();
  g.watch('data', 't');
  const tx = g.start();
  d0.watch('/', 'r');
  g.events();
  d0.events();
  assert.is(g.req(XsType.RESET_WATCHES, ['']).err, null);
  assert.is(g.read('data', tx), 'ENOENT', 'transaction gone');
  d0.write('/local/domain/5/data', 'x');
  assert.equal(g.events(), []);
  assert.equal(d0.events(), [['/local/domain/5/data', 'r']]);
});

// ---- transactions ----

test('a transaction sees its own writes; others see them only after it commits; abort discards', () => {
  const { d0, g } = setup();
  const tx = g.start();
  assert.ok(tx > 0);
  assert.is(g.write('t/a', '1', tx), 'OK');
  assert.is(g.read('t/a', tx), '1');
  assert.equal(g.ls('t', tx), ['a']);
  assert.is(g.read('t/a'), 'ENOENT');
  assert.is(d0.read('/local/domain/5/t/a'), 'ENOENT');
  assert.is(g.end(tx), 'OK');
  assert.is(d0.read('/local/domain/5/t/a'), '1');
  const tx2 = g.start();
  g.write('t/a', '2', tx2);
  g.rm('t', tx2);
  assert.is(g.end(tx2, false), 'OK');
  assert.is(g.read('t/a'), '1');
  assert.is(g.end(tx2), 'ENOENT', 'the id is gone after the end');
});

test('a transaction keeps the value it first read, even if it changes outside', () => {
  const { d0, g } = setup();
  g.write('k', 'old');
  const tx = g.start();
  assert.is(g.read('k', tx), 'old');
  d0.write('/local/domain/5/k', 'new');
  assert.is(g.read('k', tx), 'old');
  assert.is(g.end(tx), 'EAGAIN');
});

test('transaction conflicts: EAGAIN when something it read or wrote changed, or appeared, meanwhile', () => {
  const { d0, g } = setup();
  g.write('a', '1');
  g.write('b', '1');
  // Read a, write b; a changes outside.
  let tx = g.start();
  g.read('a', tx);
  g.write('b', '2', tx);
  d0.write('/local/domain/5/a', 'x');
  assert.is(g.end(tx), 'EAGAIN');
  assert.is(g.read('b'), '1', 'nothing of it applied');
  // A node it found absent is created outside.
  tx = g.start();
  assert.is(g.read('c', tx), 'ENOENT');
  g.write('c', 'outside');
  assert.is(g.end(tx), 'EAGAIN');
  // A node it wrote is written outside.
  tx = g.start();
  g.write('b', 'mine', tx);
  d0.write('/local/domain/5/b', 'theirs');
  assert.is(g.end(tx), 'EAGAIN');
  // A node it read is removed outside.
  tx = g.start();
  g.read('a', tx);
  d0.rm('/local/domain/5/a');
  assert.is(g.end(tx), 'EAGAIN');
  // Unrelated changes do not conflict.
  tx = g.start();
  g.write('b', 'ok', tx);
  d0.write('/elsewhere', '1');
  assert.is(g.end(tx), 'OK');
  assert.is(g.read('b'), 'ok');
});

test('two transactions on the same node: the first to commit wins', () => {
  const { g } = setup();
  g.write('n', '0');
  const t1 = g.start();
  const t2 = g.start();
  g.write('n', '1', t1);
  g.write('n', '2', t2);
  assert.is(g.end(t1), 'OK');
  assert.is(g.end(t2), 'EAGAIN');
  assert.is(g.read('n'), '1');
});

test('watches fire for a transaction’s changes only when it commits, and not at all if it aborts', () => {
  const { d0, g } = setup();
  d0.watch('/local/domain/5', 'home');
  d0.events();
  let tx = g.start();
  g.write('x/y', '1', tx);
  g.mkdir('z', tx);
  assert.equal(d0.events(), []);
  assert.is(g.end(tx), 'OK');
  assert.equal(d0.events(), [
    ['/local/domain/5/x/y', 'home'],
    ['/local/domain/5/z', 'home'],
  ]);
  tx = g.start();
  g.rm('x', tx);
  g.end(tx, false);
  assert.equal(d0.events(), []);
  tx = g.start();
  g.rm('x', tx);
  assert.is(g.end(tx), 'OK');
  assert.equal(d0.events(), [['/local/domain/5/x', 'home']], 'x/y fires only watches on exactly x/y');
  assert.is(g.read('x'), 'ENOENT');
});

test('TRANSACTION_START inside a transaction is EBUSY; END needs T or F and a transaction', () => {
  const { d0 } = setup();
  const tx = d0.start();
  assert.is(d0.req(XsType.TRANSACTION_START, [''], tx).err, 'EBUSY');
  assert.is(d0.req(XsType.TRANSACTION_END, ['X'], tx).err, 'EINVAL');
  assert.is(d0.req(XsType.TRANSACTION_END, ['T', 'F'], tx).err, 'EINVAL');
  assert.is(d0.req(XsType.TRANSACTION_END, ['T'], 0).err, 'ENOENT');
  assert.is(d0.end(tx), 'OK');
  const a = d0.start();
  const b = d0.start();
  assert.is.not(a, b, 'ids are distinct');
});

test('quota: 10 open transactions per guest (ENOSPC), none for the toolstack', () => {
  const { d0, g } = setup();
  const ids = Array.from({ length: 10 }, () => g.start());
  assert.is(g.req(XsType.TRANSACTION_START, ['']).err, 'ENOSPC');
  g.end(ids[0]!);
  assert.ok(g.start() > 0);
  for (let i = 0; i < 30; i++) d0.start();
});

test('quota: a transaction may touch a limited number of paths; past it the request is ENOSPC and the end ENOMEM', () => {
  const { g } = setup({ transactionNodes: 3 });
  const tx = g.start();
  g.write('a', '1', tx); // touches a and the home
  assert.is(g.read('b', tx), 'ENOENT');
  assert.is(g.read('c', tx), 'ENOSPC');
  assert.is(g.end(tx), 'ENOMEM');
  assert.is(g.read('a'), 'ENOENT');
});

// ---- quotas ----

test('quota: a guest owns at most 1000 nodes (ENOSPC); the toolstack may give it more', () => {
  const { d0, g, s } = setup();
  assert.is(s.store.ownedBy(5), 1);
  // Spread over directories: one directory's child list would hit the node-size quota first.
  for (let i = 0; s.store.ownedBy(5) < 1000; i++) assert.is(g.write(`d${i >> 5}/n${i}`, ''), 'OK', `node ${i}`);
  assert.is(g.write('one-more', ''), 'ENOSPC');
  assert.is(g.write('x/y', ''), 'ENOSPC');
  assert.is(g.write('d0/n1', 'changing is fine'), 'OK');
  assert.is(d0.write('/local/domain/5/by-dom0', ''), 'OK');
  assert.is(d0.setPerms('/local/domain/5/by-dom0', ['n5']), 'OK');
  assert.is(s.store.ownedBy(5), 1001);
  g.rm('d0/n1');
  g.rm('d0/n2');
  assert.is(g.write('again', ''), 'OK');
  assert.is(g.write('x/y', ''), 'ENOSPC', 'two new nodes do not fit in one');
});

test('quota: the node quota holds across a transaction’s commit', () => {
  const { g } = setup({ nodes: 5 });
  const tx = g.start();
  for (let i = 0; i < 4; i++) assert.is(g.write(`t${i}`, '', tx), 'OK');
  assert.is(g.write('t4', '', tx), 'ENOSPC');
  g.write('outside', '');
  assert.is(g.end(tx), 'ENOSPC', 'the committed tree filled up meanwhile');
});

test('quota: node size 2048 counts a 16-byte header, 8 bytes per permission, value and child names', () => {
  const { d0, g } = setup();
  assert.is(g.write('big', 'x'.repeat(2048 - 16 - 8)), 'OK');
  assert.is(g.write('big', 'x'.repeat(2048 - 16 - 8 + 1)), 'ENOSPC');
  assert.is(g.setPerms('big', ['n5', 'r7']), 'ENOSPC', 'a second permission makes the node too big');
  g.write('big', '');
  assert.is(g.setPerms('big', ['n5', 'r7']), 'OK');
  assert.is(g.write('big', 'x'.repeat(2048 - 16 - 16)), 'OK');
  assert.is(g.write('big', 'x'.repeat(2048 - 16 - 16 + 1)), 'ENOSPC');
  assert.is(d0.write('/local/domain/5/big', 'x'.repeat(4000)), 'OK', 'the toolstack is not limited');
  // A directory whose child list outgrows the limit takes no more children.
  const name = 'c'.repeat(200);
  let made = 0;
  while (g.write(`dir/${name}${made}`, '') === 'OK') made++;
  assert.is(made, Math.floor((2048 - 16 - 8) / (name.length + 2)));
});

test('quota: 128 watches per guest (E2BIG), none for the toolstack', () => {
  const { d0, g } = setup();
  for (let i = 0; i < 128; i++) assert.is(g.watch('data', `t${i}`), 'OK');
  assert.is(g.watch('data', 'one-more'), 'E2BIG');
  g.unwatch('data', 't0');
  assert.is(g.watch('data', 'one-more'), 'OK');
  for (let i = 0; i < 300; i++) assert.is(d0.watch('/', `t${i}`), 'OK');
});

test('quota: at most 5 permissions per node for a guest (ENOSPC)', () => {
  const { d0, g } = setup();
  g.write('p', '');
  assert.is(g.setPerms('p', ['n5', 'r1', 'r2', 'r3', 'r4']), 'OK');
  assert.is(g.setPerms('p', ['n5', 'r1', 'r2', 'r3', 'r4', 'r6']), 'ENOSPC');
  assert.is(d0.setPerms('/local/domain/5/p', ['n5', 'r1', 'r2', 'r3', 'r4', 'r6']), 'OK');
});

test('a reply longer than 4096 bytes is E2BIG; DIRECTORY_PART pages through the same list', () => {
  const { d0 } = setup();
  const names = Array.from({ length: 300 }, (_, i) => `child-number-${String(i).padStart(4, '0')}`);
  for (const n of names) d0.write(`/big/${n}`, '');
  assert.equal(d0.ls('/big'), ['E2BIG']);
  const got: string[] = [];
  let offset = 0;
  let gen = '';
  for (let i = 0; i < 10; i++) {
    const r = d0.req(XsType.DIRECTORY_PART, ['/big', String(offset)]);
    assert.is(r.err, null);
    assert.ok(r.payload.length <= PAYLOAD_MAX);
    const [g, ...rest] = r.list;
    if (gen) assert.is(g, gen, 'the same generation while unchanged');
    gen = g!;
    const done = rest[rest.length - 1] === '';
    const part = done ? rest.slice(0, -1) : rest;
    got.push(...part);
    offset += part.reduce((n, x) => n + x.length + 1, 0);
    if (done) break;
  }
  assert.equal(got, names);
  const past = d0.req(XsType.DIRECTORY_PART, ['/big', '999999']);
  assert.equal(past.list, [gen, ''], 'past the end: the generation and an empty name');
  d0.write('/big/new', '');
  assert.is.not(d0.req(XsType.DIRECTORY_PART, ['/big', '0']).list[0], gen, 'a change moves the generation');
});

test('quota: watch events beyond a connection’s output budget are dropped, replies are not', () => {
  const { d0, g, s } = setup({ outputBytes: 200 });
  g.watch('data', 't');
  s.take(5);
  for (let i = 0; i < 50; i++) d0.write(`/local/domain/5/data/n${i}`, '');
  const q = s.connection(5);
  assert.ok(q.out.bytes <= 200);
  assert.ok(q.out.length > 0 && q.out.length < 50);
  const r = g.req(XsType.READ, ['data/n1']);
  assert.is(r.err, null);
});

test('a guest that never reads: 480 distinct events wait at most, duplicates are dropped, in linear time', () => {
  const { d0, g, s } = setup();
  for (let i = 0; i < 2000; i++) d0.write(`/local/domain/5/data/d${i % 40}/n${i}`, '');
  g.watch('data', 't');
  g.events();
  for (let i = 0; i < 20_000; i++) d0.write(`/local/domain/5/data/d${i % 40}/n${i % 2000}`, String(i));
  const q = s.connection(5).out;
  assert.is(q.length, XS_LIMITS.queuedEvents);
  assert.ok(q.bytes <= s.quotas.outputBytes);
  const events = g.events();
  assert.is(new Set(events.map(([p]) => p)).size, events.length, 'no duplicates');
});

test('limits for everyone, the toolstack included, keep the state bounded', () => {
  const { d0, s } = setup();
  // Nodes in the tree.
  let i = 0;
  while (s.store.size < XS_LIMITS.nodes) assert.is(d0.write(`/n/d${i >> 8}/x${i++}`, ''), 'OK');
  assert.is(d0.write('/one-more', ''), 'ENOSPC');
  assert.is(d0.write('/n/d0/x0', 'changing is fine'), 'OK');
  // Permissions per node.
  const perms = Array.from({ length: XS_LIMITS.perms }, (_, k) => `r${k}`);
  assert.is(d0.setPerms('/n', perms), 'OK');
  assert.is(d0.setPerms('/n', [...perms, 'r99']), 'ENOSPC');
  // Watches over all connections.
  for (let k = 0; k < XS_LIMITS.watches; k++) assert.is(d0.watch('/n', `w${k}`), 'OK');
  assert.is(d0.watch('/n', 'one-more'), 'E2BIG');
  assert.is(new Client(s, 5).watch('data', 'guest'), 'E2BIG', 'the guest shares the limit');
  // Open transactions over all connections.
  for (let k = 0; k < XS_LIMITS.transactions; k++) d0.start();
  assert.is(d0.req(XsType.TRANSACTION_START, ['']).err, 'ENOSPC');
});

test('limits on what open transactions hold: paths touched in all, and child lists', () => {
  const { d0, s } = setup();
  for (let k = 0; k < 300; k++) d0.write(`/wide/${'c'.repeat(12)}${k}`, '');
  const tx = d0.start();
  assert.equal(d0.ls('/wide', tx), ['ENOSPC'], 'a child list of more than 4096 bytes');
  assert.is(d0.end(tx), 'ENOMEM');
  const t1 = d0.start();
  let touched = 0;
  while (d0.read(`/p${touched}`, t1) === 'ENOENT') touched++;
  assert.is(d0.read(`/p${touched}`, t1), 'ENOSPC');
  assert.is(s.countTxEntries(), XS_LIMITS.transactionEntries);
  assert.is(d0.end(t1, false), 'OK');
  assert.is(s.countTxEntries(), 0);
});

test('a 65th domain is refused a connection', () => {
  const s = new XenstoreServer();
  for (let d = 1; d < XS_LIMITS.connections; d++) s.connection(d);
  assert.throws(
    () => s.connection(1000),
    (e: unknown) => e instanceof InputError && /at most 64/.test(e.message),
  );
});

// ---- domains ----

test('GET_DOMAIN_PATH answers /local/domain/<id> for anyone; a missing argument is EINVAL', () => {
  const { g } = setup();
  assert.equal(g.req(XsType.GET_DOMAIN_PATH, ['7']).list, ['/local/domain/7']);
  assert.equal(g.req(XsType.GET_DOMAIN_PATH, ['x']).list, ['/local/domain/0'], 'parsed as atoi does');
  assert.is(g.req(XsType.GET_DOMAIN_PATH, new Uint8Array(0)).err, 'EINVAL');
});

test('IS_DOMAIN_INTRODUCED, INTRODUCE, RELEASE and RESUME from the toolstack', () => {
  const { d0 } = setup();
  const intro = (id: string): string | undefined => d0.req(XsType.IS_DOMAIN_INTRODUCED, [id]).list[0];
  assert.is(intro('5'), 'T');
  assert.is(intro('9'), 'F');
  assert.is(intro(String(DOMID_SELF)), 'T');
  assert.is(d0.req(XsType.INTRODUCE, ['9', '1234', '0']).err, 'EINVAL', 'port 0');
  assert.is(d0.req(XsType.INTRODUCE, ['9', '1234']).err, 'EINVAL');
  assert.is(d0.req(XsType.INTRODUCE, ['0', '1234', '3']).err, 'EINVAL', 'not the toolstack itself');
  assert.is(d0.req(XsType.INTRODUCE, [String(DOMID_SELF), '1234', '3']).err, 'EINVAL');
  assert.is(d0.req(XsType.INTRODUCE, ['9', '1234', '3']).err, null);
  assert.is(intro('9'), 'T');
  assert.is(d0.req(XsType.RESUME, ['9']).err, null);
  assert.is(d0.req(XsType.RELEASE, ['9']).err, null);
  assert.is(intro('9'), 'F');
  assert.is(d0.req(XsType.RELEASE, ['9']).err, 'ENOENT');
  assert.is(d0.req(XsType.RESUME, ['9']).err, 'ENOENT');
  assert.is(d0.req(XsType.RELEASE, ['0']).err, 'EINVAL');
  assert.is(d0.req(XsType.CONTROL, ['check']).err, 'ENOSYS');
  assert.is(d0.req(XsType.SET_TARGET, ['5', '9']).err, 'ENOSYS');
});

test('releasing a domain drops its watches, transactions and queued output', () => {
  const { s, d0, g } = setup();
  g.watch('data', 't');
  const tx = g.start();
  s.releaseDomain(5);
  assert.is(s.connection(5).out.length, 0);
  d0.write('/local/domain/5/data', 'x');
  assert.equal(g.events(), []);
  assert.is(g.read('data', tx), 'ENOENT');
});

test('no request, however malformed, escapes as an exception', () => {
  const s = new XenstoreServer();
  let seed = 1;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const words = ['/', 'a', 'b', '@releaseDomain', 'T', 'F', '5', 'r5', 'n0', '', 'x//y', '/local/domain/5'];
  for (let i = 0; i < 5000; i++) {
    const domid = [0, 5, 7][rnd(3)]!;
    const n = rnd(4);
    const payload = stringToBytes(Array.from({ length: n }, () => `${words[rnd(words.length)]}\0`).join(''));
    const type = rnd(26);
    const txId = rnd(4) === 0 ? rnd(5) : 0;
    s.handle(domid, { type, reqId: i, txId, payload });
    if (rnd(10) === 0) s.take(domid);
  }
  assert.is(s.internalError, null);
});

test.run();
