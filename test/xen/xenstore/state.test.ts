// The xenstore section: a busy daemon (binary values, permissions, watches
// of every kind, an open transaction, queued events, a request received in
// part, a connection stopped for a protocol error) survives save → msgpack
// → restore unchanged and goes on behaving the same; `check` refuses
// damaged states with the path of the bad field.
import { decode, encode } from '@msgpack/msgpack';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FormatError } from '../../../src/errors.js';
import {
  MSGPACK_OPTIONS,
  decodeState,
  decodeWithSchema,
  descriptorFromSchema,
  encodeState,
  schemaOf,
} from '../../../src/vmstate/index.js';
import { XenstoreRing } from '../../../src/xen/xenstore/ring.js';
import { XenstoreServer } from '../../../src/xen/xenstore/server.js';
import { CHUNK, check, restore, save, xenstoreState, type XenstoreState } from '../../../src/xen/xenstore/state.js';
import { RingError, RingOffset, XsType, encodeMessage, stringToBytes } from '../../../src/xen/xenstore/wire.js';
import { Client } from './xs-client.js';

interface Busy {
  s: XenstoreServer;
  page: Uint8Array;
  tx: number;
}

function busy(): Busy {
  const s = new XenstoreServer();
  const d0 = new Client(s, 0);
  const g = new Client(s, 5);
  d0.mkdir('/local/domain/5');
  d0.setPerms('/local/domain/5', ['n5', 'r0']);
  s.introduceDomain(5);
  d0.write('/bin', String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i)));
  d0.setPerms('/bin', ['r0', 'b5', 'n7']);
  g.write('data/a', 'one');
  g.write('data/b', 'two');
  g.write('data/c/d', 'three');
  g.write('data/e', 'four');
  g.watch('data', 'rel-token');
  g.watch('/local/domain/5/data/a', 'abs');
  d0.watch('@releaseDomain', 'rel');
  d0.watch('/', 'everything');
  d0.setPerms('@introduceDomain', ['n0', 'r5']);
  const tx = g.start();
  g.read('data/a', tx);
  g.write('data/b', 'changed-in-tx', tx);
  g.rm('data/c', tx);
  g.mkdir('data/new/deep', tx);
  // A request cut in the middle, through a ring.
  const page = new Uint8Array(4096);
  const ring = new XenstoreRing(s, 5, page, () => {});
  ring.initialise();
  const req = encodeMessage({ type: XsType.READ, reqId: 77, txId: 0, payload: stringToBytes('data/a\0') });
  page.set(req.subarray(0, 20), RingOffset.req);
  new DataView(page.buffer).setUint32(RingOffset.req_prod, 20, true);
  ring.kick();
  // Events the ring has not taken yet (a node the transaction did not touch).
  d0.write('/local/domain/5/data/e', 'x');
  // Another guest broke its ring.
  new Client(s, 7).watch('/x', 'y');
  s.resetConnection(7, RingError.PROTO);
  return { s, page, tx };
}

function roundTrip(st: XenstoreState): XenstoreState {
  const bytes = encode(encodeState(xenstoreState, st), MSGPACK_OPTIONS);
  const back = decodeState(xenstoreState, decode(bytes, MSGPACK_OPTIONS));
  check(back);
  return back;
}

test('save → msgpack → check → restore → save gives the same state', () => {
  const { s } = busy();
  const st = save(s);
  check(st);
  assert.ok(st.nodes.length > 10);
  assert.is(st.transactions.length, 1);
  assert.ok(st.tx_entries.length > 3);
  assert.ok(
    st.queued.some((q) => q.domid === 5),
    'queued events travel',
  );
  assert.is(st.connections.find((c) => c.domid === 5)!.in_len, 20, 'the partial request travels');
  assert.is(st.connections.find((c) => c.domid === 7)!.error, RingError.PROTO);
  assert.ok(st.watches.length >= 4);
  const back = roundTrip(st);
  assert.equal(back, st);
  assert.equal(save(restore(back)), st);
});

test('the restored daemon answers the same: values, permissions, children order, generations', () => {
  const { s } = busy();
  const r = restore(roundTrip(save(s)));
  const a = new Client(s, 0);
  const b = new Client(r, 0);
  for (const p of ['/bin', '/local/domain/5/data/a', '/local/domain/5/data/c/d']) {
    assert.is(b.read(p), a.read(p), p);
    assert.equal(b.perms(p), a.perms(p), p);
  }
  assert.equal(b.ls('/local/domain/5/data'), a.ls('/local/domain/5/data'));
  assert.equal(b.perms('@introduceDomain'), ['n0', 'r5']);
  const part = (c: Client): string[] => c.req(XsType.DIRECTORY_PART, ['/local/domain/5/data', '0']).list;
  assert.equal(part(b), part(a), 'generation counts too');
  assert.equal(r.store.ownerCounts(), s.store.ownerCounts());
});

test('an open transaction continues after a restore: it commits, or conflicts, as it would have', () => {
  const orig = busy();
  const r = restore(roundTrip(save(orig.s)));
  for (const srv of [orig.s, r]) {
    const g = new Client(srv, 5);
    assert.is(g.read('data/b', orig.tx), 'changed-in-tx');
    assert.is(g.read('data/c/d', orig.tx), 'ENOENT');
    assert.is(g.end(orig.tx), 'OK');
    assert.is(g.read('data/b'), 'changed-in-tx');
    assert.equal(g.ls('data/new'), ['deep']);
  }
  assert.equal(save(r), save(orig.s), 'both daemons end in the same state');

  const again = busy();
  const r2 = restore(roundTrip(save(again.s)));
  new Client(r2, 0).write('/local/domain/5/data/a', 'changed outside');
  assert.is(new Client(r2, 5).end(again.tx), 'EAGAIN', 'a node it read changed after the restore');
});

test('a watch registered before the snapshot fires after the restore, and queued events are still there', () => {
  const { s } = busy();
  const r = restore(roundTrip(save(s)));
  const g = new Client(r, 5);
  const queued = g.events();
  assert.ok(queued.some(([p, t]) => p === 'data/e' && t === 'rel-token'));
  new Client(r, 0).write('/local/domain/5/data/a', 'after');
  assert.equal(g.events(), [
    ['data/a', 'rel-token'],
    ['/local/domain/5/data/a', 'abs'],
  ]);
  r.releaseDomain(9);
  r.introduceDomain(9);
  r.releaseDomain(9);
  assert.ok(new Client(r, 0).events().some(([p, t]) => p === '@releaseDomain' && t === 'rel'));
});

test('a request cut by the snapshot is completed by the guest after the restore', () => {
  const { s, page } = busy();
  const r = restore(roundTrip(save(s)));
  const copy = page.slice();
  const ring = new XenstoreRing(r, 5, copy, () => {});
  // Drain what was queued before the snapshot, so the reply is easy to find.
  r.take(5);
  const dv = new DataView(copy.buffer);
  // The guest had read everything sent before the snapshot.
  dv.setUint32(RingOffset.rsp_cons, dv.getUint32(RingOffset.rsp_prod, true), true);
  const req = encodeMessage({ type: XsType.READ, reqId: 77, txId: 0, payload: stringToBytes('data/a\0') });
  copy.set(req.subarray(20), RingOffset.req + 20);
  dv.setUint32(RingOffset.req_prod, req.length, true);
  ring.kick();
  const prod = dv.getUint32(RingOffset.rsp_prod, true);
  const cons = dv.getUint32(RingOffset.rsp_cons, true);
  const reply = copy.slice(RingOffset.rsp + cons, RingOffset.rsp + prod);
  assert.is(dv.getUint32(RingOffset.rsp + cons + 4, true), 77, 'the reply to the cut request');
  assert.equal(Array.from(reply.subarray(16)), Array.from(stringToBytes('one')));
});

test('a connection stopped for a protocol error stays stopped after a restore', () => {
  const { s } = busy();
  const r = restore(roundTrip(save(s)));
  assert.is(r.connection(7).error, RingError.PROTO);
  assert.is(r.connection(7).watches.length, 0);
});

// ---- check ----

type Damage = (st: XenstoreState) => void;
type Blobby = Record<string, unknown>;
/** Replaces the blob `name` of a record with `b`, chunked as save does. */
function setBlob(o: Blobby, name: string, b: Uint8Array): void {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < b.length; at += CHUNK) {
    const c = new Uint8Array(CHUNK);
    c.set(b.subarray(at, at + CHUNK));
    chunks.push(c);
  }
  o[`${name}_len`] = b.length;
  o[`${name}_chunks`] = chunks.length;
  o[name] = chunks;
}
const blobText = (o: Blobby, name: string): string => {
  const chunks = o[name] as Uint8Array[];
  return String.fromCharCode(...chunks.flatMap((c) => Array.from(c))).slice(0, o[`${name}_len`] as number);
};
const setPath = (o: object, p: string): void => setBlob(o as Blobby, 'path', stringToBytes(p));
const nodeAt = (st: XenstoreState, path: string): number => st.nodes.findIndex((n) => blobText(n, 'path') === path);
const conn5 = (st: XenstoreState): XenstoreState['connections'][number] => st.connections.find((c) => c.domid === 5)!;
const watch5 = (st: XenstoreState): XenstoreState['watches'][number] =>
  st.watches.find((w) => w.domid === 5 && w.relative)!;

const DAMAGE: Array<[string, RegExp, Damage]> = [
  ['a count that disagrees', /xenstore\.nr_nodes: count/, (st) => (st.nr_nodes += 1)],
  ['the root not first', /nodes\[0\]\.path: the first node must be the root/, (st) => st.nodes.reverse()],
  [
    'a duplicate path',
    /nodes\[\d+\]\.path: \/tool appears twice/,
    (st) => {
      st.nodes.splice(2, 0, structuredClone(st.nodes[1]!));
      st.nr_nodes++;
    },
  ],
  [
    'a node before its parent',
    /comes before its parent/,
    (st) => {
      const i = nodeAt(st, '/tool/xenstored');
      st.nodes.splice(1, 0, st.nodes.splice(i, 1)[0]!);
    },
  ],
  ['a bad character', /nodes\[1\]\.path: bad path/, (st) => setPath(st.nodes[1]!, '/to ol')],
  ['a trailing slash', /bad path/, (st) => setPath(st.nodes[1]!, '/tool/')],
  ['a relative path', /bad path/, (st) => setPath(st.nodes[1]!, 'tool')],
  [
    'a length that does not fill its chunks',
    /nodes\[1\]\.path_len: 300 bytes do not fill 1 chunks/,
    (st) => (st.nodes[1]!.path_len = 300),
  ],
  ['a chunk count that disagrees', /nodes\[1\]\.value_chunks: count/, (st) => (st.nodes[1]!.value_chunks = 2)],
  ['padding that is not zero', /nodes\[1\]\.path: padding is not zero/, (st) => (st.nodes[1]!.path[0]![CHUNK - 1] = 1)],
  [
    'a node without permissions',
    /perms: a node needs at least its owner/,
    (st) => {
      st.nodes[1]!.perms = [];
      st.nodes[1]!.nr_perms = 0;
    },
  ],
  ['a generation from the future', /generation \d+ is beyond/, (st) => (st.nodes[1]!.generation = st.generation + 1n)],
  [
    'a missing special node',
    /the special node @releaseDomain is missing/,
    (st) => {
      st.nodes.splice(nodeAt(st, '@releaseDomain'), 1);
      st.nr_nodes--;
      st.owners.find((o) => o.domid === 0)!.nodes--;
    },
  ],
  ['quota use that does not match', /owners\[\d\]\.nodes: domain 0 owns \d+ nodes, not/, (st) => st.owners[0]!.nodes++],
  [
    'an owner not listed',
    /owners: domain 5 owns nodes but is not listed/,
    (st) => {
      st.owners = st.owners.filter((o) => o.domid !== 5);
      st.nr_owners = st.owners.length;
    },
  ],
  [
    'two connections for a domain',
    /connections\[\d\]\.domid: domain 5 has two connections/,
    (st) => {
      st.connections.push(structuredClone(conn5(st)));
      st.nr_connections++;
    },
  ],
  ['a watch of no connection', /watches\[\d+\]\.domid: domain 9 has no connection/, (st) => (st.watches[0]!.domid = 9)],
  [
    'a relative watch outside its home',
    /watches\[\d+\]\.relative: .* is not below domain 5/,
    (st) => setPath(watch5(st), '/elsewhere'),
  ],
  ['a watch with a bad path', /watches\[\d+\]\.path: bad path/, (st) => setPath(watch5(st), '/a//b')],
  [
    'a token with a NUL',
    /watches\[\d+\]\.token: a token cannot hold a NUL/,
    (st) => setBlob(watch5(st), 'token', Uint8Array.of(65, 0, 66)),
  ],
  [
    'the same watch twice',
    /watches\[\d+\]: the same watch twice/,
    (st) => {
      st.watches.push(structuredClone(st.watches[0]!));
      st.nr_watches++;
    },
  ],
  ['transaction id 0', /transactions\[0\]\.id: transaction id 0/, (st) => (st.transactions[0]!.id = 0)],
  [
    'an entry of no transaction',
    /tx_entries\[0\]\.tx_id: domain 5 has no transaction 99/,
    (st) => (st.tx_entries[0]!.tx_id = 99),
  ],
  [
    'a transaction path twice',
    /tx_entries\[1\]\.path: .* twice in one transaction/,
    (st) => (st.tx_entries[1] = structuredClone(st.tx_entries[0]!)),
  ],
  [
    'a child name with a slash',
    /children: bad child name/,
    (st) =>
      setBlob(
        st.tx_entries.find((x) => x.exists)!,
        'children',
        stringToBytes('a/b\0'),
      ),
  ],
  [
    'a child list without its final NUL',
    /children: the child list must end with a NUL/,
    (st) =>
      setBlob(
        st.tx_entries.find((x) => x.exists)!,
        'children',
        stringToBytes('a'),
      ),
  ],
  [
    'an absent node with contents',
    /tx_entries\[\d+\]: an absent node with contents/,
    (st) =>
      setBlob(
        st.tx_entries.find((x) => !x.exists)!,
        'value',
        Uint8Array.of(1),
      ),
  ],
  [
    'more sent than the message holds',
    /connections\[\d\]\.out_used: \d+ bytes sent/,
    (st) => (conn5(st).out_used = 16 + st.queued.find((q) => q.domid === 5)!.payload_len),
  ],
  ['a queued message of no known type', /queued\[\d+\]\.type: unknown message type/, (st) => (st.queued[0]!.type = 99)],
  [
    'a complete request left unprocessed',
    /in: a complete request was left unprocessed/,
    (st) => setBlob(conn5(st), 'in', encodeMessage({ type: 2, reqId: 1, txId: 0, payload: stringToBytes('x\0') })),
  ],
  [
    'a partial request claiming too much',
    /in: a partial request claims 5000 payload bytes/,
    (st) => {
      const h = encodeMessage({ type: 2, reqId: 1, txId: 0, payload: new Uint8Array(0) });
      new DataView(h.buffer).setUint32(12, 5000, true);
      setBlob(conn5(st), 'in', h);
    },
  ],
];

for (const [what, re, damage] of DAMAGE) {
  test(`check refuses ${what}`, () => {
    const st = structuredClone(save(busy().s));
    damage(st);
    try {
      check(st);
      assert.unreachable('check accepted it');
    } catch (e) {
      assert.instance(e, FormatError);
      assert.match((e as Error).message, /^xenstore\./);
      assert.match((e as Error).message, re);
    }
  });
}

test('the schema a snapshot embeds can be read back within the decoder limits (inspect can decode it)', () => {
  const schema = JSON.parse(JSON.stringify(schemaOf(xenstoreState))) as unknown;
  descriptorFromSchema(schema);
  const st = save(busy().s);
  const rec = decodeWithSchema(
    schema,
    decode(encode(encodeState(xenstoreState, st), MSGPACK_OPTIONS), MSGPACK_OPTIONS),
  );
  assert.is(rec.nr_nodes, st.nr_nodes);
});

test('a snapshot is compact: a value is stored as bytes, not as a list of numbers', () => {
  const s = new XenstoreServer();
  new Client(s, 0).write('/big', 'x'.repeat(4000));
  const size = encode(encodeState(xenstoreState, save(s)), MSGPACK_OPTIONS).length;
  assert.ok(size < 4000 + 1500, `${size} bytes`);
});

test('check names the section it was told', () => {
  const st = save(busy().s);
  st.nr_nodes = 0;
  assert.throws(() => check(st, 'snapshot.xen/xenstore'), /^snapshot\.xen\/xenstore\.nr_nodes: /);
});

test.run();
