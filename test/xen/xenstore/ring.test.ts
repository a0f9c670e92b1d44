// The ring backend against a simulated guest frontend on a plain page:
// requests and replies across the ring's wrap and the u32 index wrap,
// requests arriving a byte at a time, replies larger than the free space,
// flow control, and hostile guests (garbage indexes, oversize requests,
// 10 000 watches, random bytes) that must neither throw nor spin.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { XenstoreRing, SERVER_FEATURES } from '../../../src/xen/xenstore/ring.js';
import { XenstoreServer } from '../../../src/xen/xenstore/server.js';
import {
  HEADER_SIZE,
  RING_SIZE,
  RingConnection,
  RingError,
  RingOffset,
  XsType,
  decodeHeader,
  encodeMessage,
  splitStrings,
  stringToBytes,
  type XsMessage,
} from '../../../src/xen/xenstore/wire.js';

/** A guest's side of the ring, written as a frontend driver would. */
class Guest {
  readonly page = new Uint8Array(4096);
  private readonly dv = new DataView(this.page.buffer);
  private rx = new Uint8Array(0);
  private reqId = 0;

  get(f: keyof typeof RingOffset): number {
    return this.dv.getUint32(RingOffset[f], true);
  }
  set(f: keyof typeof RingOffset, v: number): void {
    this.dv.setUint32(RingOffset[f], v >>> 0, true);
  }
  /** Starts all four indexes at `base` (guests must not assume 0). */
  indexes(base: number): void {
    for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) this.set(f, base);
  }

  /** Writes as much of `bytes` as fits; returns how much. */
  send(bytes: Uint8Array): number {
    const cons = this.get('req_cons');
    const prod = this.get('req_prod');
    const n = Math.min(bytes.length, RING_SIZE - ((prod - cons) >>> 0));
    for (let i = 0; i < n; i++) this.page[RingOffset.req + ((prod + i) & (RING_SIZE - 1))] = bytes[i]!;
    this.set('req_prod', prod + n);
    return n;
  }

  request(type: number, args: string[] | Uint8Array, txId = 0): Uint8Array {
    const payload = args instanceof Uint8Array ? args : stringToBytes(args.map((a) => `${a}\0`).join(''));
    return encodeMessage({ type, reqId: ++this.reqId, txId, payload });
  }

  /** Takes at most `max` available reply bytes. */
  receive(max = Infinity): number {
    const cons = this.get('rsp_cons');
    const prod = this.get('rsp_prod');
    const n = Math.min((prod - cons) >>> 0, max);
    const next = new Uint8Array(this.rx.length + n);
    next.set(this.rx);
    for (let i = 0; i < n; i++) next[this.rx.length + i] = this.page[RingOffset.rsp + ((cons + i) & (RING_SIZE - 1))]!;
    this.rx = next;
    this.set('rsp_cons', cons + n);
    return n;
  }

  /** Complete messages received so far (removed from the buffer). */
  messages(): XsMessage[] {
    const out: XsMessage[] = [];
    while (this.rx.length >= HEADER_SIZE) {
      const h = decodeHeader(this.rx);
      if (this.rx.length < HEADER_SIZE + h.len) break;
      out.push({
        type: h.type,
        reqId: h.reqId,
        txId: h.txId,
        payload: this.rx.slice(HEADER_SIZE, HEADER_SIZE + h.len),
      });
      this.rx = this.rx.slice(HEADER_SIZE + h.len);
    }
    return out;
  }
}

function setup(quotas = {}): { s: XenstoreServer; guest: Guest; ring: XenstoreRing; notes: { n: number } } {
  const s = new XenstoreServer({ quotas });
  const d0 = (type: number, args: string[]): void => {
    const payload = stringToBytes(args.map((a) => `${a}\0`).join(''));
    s.handle(0, { type, reqId: 0, txId: 0, payload }, { queueReply: false });
  };
  d0(XsType.MKDIR, ['/local/domain/5']);
  d0(XsType.SET_PERMS, ['/local/domain/5', 'n5']);
  const guest = new Guest();
  const notes = { n: 0 };
  const ring = new XenstoreRing(s, 5, guest.page, () => notes.n++);
  ring.initialise();
  s.introduceDomain(5);
  return { s, guest, ring, notes };
}

const texts = (ms: XsMessage[]): string[][] => ms.map((m) => splitStrings(m.payload));
/** The backend never writes past what the guest consumed. */
const withinRing = (g: Guest): boolean => (g.get('rsp_prod') - g.get('rsp_cons')) >>> 0 <= RING_SIZE;

test('initialise: empty queues, connected, no error, both features advertised', () => {
  const { guest } = setup();
  assert.is(guest.get('server_features'), SERVER_FEATURES);
  assert.is(SERVER_FEATURES, 3);
  assert.is(guest.get('connection'), RingConnection.CONNECTED);
  assert.is(guest.get('error'), RingError.NONE);
  for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) assert.is(guest.get(f), 0);
});

test('a request is consumed and answered, and the guest is signalled', () => {
  const { guest, ring, notes } = setup();
  guest.send(guest.request(XsType.WRITE, stringToBytes('data/x\0hello')));
  guest.send(guest.request(XsType.READ, ['data/x']));
  assert.is(ring.kick(), false);
  assert.is(guest.get('req_cons'), guest.get('req_prod'));
  assert.ok(notes.n > 0);
  guest.receive();
  const m = guest.messages();
  assert.equal(
    m.map((x) => [x.type, x.reqId]),
    [
      [XsType.WRITE, 1],
      [XsType.READ, 2],
    ],
  );
  assert.equal(m[1]!.payload, stringToBytes('hello'));
});

test('messages crossing the ring boundary and the 2^32 index wrap arrive whole', () => {
  const { guest, ring } = setup();
  guest.indexes(0xffffff00 + 7);
  const replies: XsMessage[] = [];
  for (let i = 0; i < 200; i++) {
    const value = 'v'.repeat(i % 37);
    const bytes = guest.request(XsType.WRITE, stringToBytes(`data/k${i % 5}\0${value}`));
    let sent = 0;
    while (sent < bytes.length) {
      sent += guest.send(bytes.subarray(sent));
      ring.kick();
      guest.receive();
      replies.push(...guest.messages());
    }
    guest.send(guest.request(XsType.READ, [`data/k${i % 5}`]));
    ring.kick();
    guest.receive();
    replies.push(...guest.messages());
    assert.ok(withinRing(guest));
  }
  assert.ok(guest.get('req_prod') < 0x10000, 'the producer index wrapped past 2^32');
  assert.is(replies.length, 400);
  for (let i = 0; i < 200; i++) {
    assert.is(replies[2 * i]!.type, XsType.WRITE);
    assert.equal(replies[2 * i + 1]!.payload, stringToBytes('v'.repeat(i % 37)), `read ${i}`);
  }
});

test('a request arriving one byte at a time is kept in part and handled once complete', () => {
  const { s, guest, ring } = setup();
  const bytes = guest.request(XsType.WRITE, stringToBytes('data/slow\0abc'));
  for (let i = 0; i < bytes.length; i++) {
    guest.send(bytes.subarray(i, i + 1));
    ring.kick();
    if (i < bytes.length - 1) {
      assert.is(s.connection(5).inBuf.length, i + 1);
      assert.is(guest.get('rsp_prod'), 0, 'no reply before the last byte');
    }
  }
  assert.is(s.connection(5).inBuf.length, 0);
  guest.receive();
  assert.equal(texts(guest.messages()), [['OK']]);
});

test('a reply larger than the free space is written in pieces, never past the consumer', () => {
  const { guest, ring } = setup();
  const names = Array.from({ length: 120 }, (_, i) => `name-${String(i).padStart(3, '0')}-xxxxxxxxxxxxxxxx`);
  for (const n of names) {
    guest.send(guest.request(XsType.WRITE, stringToBytes(`d${n.slice(5, 7)}/${n}\0`)));
    ring.kick();
    guest.receive();
    guest.messages();
  }
  // One directory: 40 names of 26 bytes, more than the ring holds.
  const big = Array.from({ length: 40 }, (_, i) => `entry-${String(i).padStart(2, '0')}-yyyyyyyyyyyyyyyyyy`);
  for (const n of big) {
    guest.send(guest.request(XsType.WRITE, stringToBytes(`big/${n}\0`)));
    ring.kick();
    guest.receive();
    guest.messages();
  }
  guest.send(guest.request(XsType.DIRECTORY, ['big']));
  ring.kick();
  let got: XsMessage[] = [];
  for (let i = 0; i < 100 && got.length === 0; i++) {
    assert.ok(withinRing(guest));
    guest.receive(100);
    ring.kick();
    got = guest.messages();
  }
  assert.equal(texts(got), [big]);
  assert.ok(got[0]!.payload.length > RING_SIZE);
});

test('flow control: with 20 replies waiting for ring space, no more requests are read', () => {
  const { s, guest, ring } = setup();
  const total = 120;
  let sent = 0;
  let next: Uint8Array | null = null;
  const fill = (): void => {
    while (sent < total) {
      next ??= guest.request(XsType.READ, [`data/none${sent}`]);
      if (RING_SIZE - ((guest.get('req_prod') - guest.get('req_cons')) >>> 0) < next.length) return;
      guest.send(next);
      next = null;
      sent++;
    }
  };
  for (let round = 0; round < 20 && sent < total; round++) {
    fill();
    ring.kick();
  }
  assert.is(s.pendingReplies(5), 20, 'stopped at the outstanding quota');
  assert.ok(guest.get('req_cons') !== guest.get('req_prod'), 'requests left unread in the ring');
  const replies: XsMessage[] = [];
  for (let i = 0; i < 200 && replies.length < total; i++) {
    guest.receive();
    replies.push(...guest.messages());
    fill();
    ring.kick();
  }
  assert.is(replies.length, total);
  assert.equal(
    replies.map((r) => r.reqId),
    Array.from({ length: total }, (_, i) => i + 1),
    'in order',
  );
});

test('a header claiming more than 4096 bytes stops the connection with PROTO and drops its state', () => {
  const { s, guest, ring } = setup();
  guest.send(guest.request(XsType.WATCH, ['data', 'tok']));
  ring.kick();
  assert.is(s.connection(5).watches.length, 1);
  const bad = guest.request(XsType.WRITE, new Uint8Array(0));
  new DataView(bad.buffer).setUint32(12, 4097, true);
  guest.send(bad);
  ring.kick();
  assert.is(guest.get('error'), RingError.PROTO);
  assert.is(s.connection(5).error, RingError.PROTO);
  assert.is(s.connection(5).watches.length, 0);
  assert.is(s.connection(5).out.length, 0);
  const prod = guest.get('rsp_prod');
  guest.send(guest.request(XsType.READ, ['data']));
  ring.kick();
  assert.is(guest.get('rsp_prod'), prod, 'an ignored connection gets no answers');
});

test('the guest can ask for a reconnection: all state goes, both queues empty, the error clears', () => {
  const { s, guest, ring, notes } = setup();
  const bad = guest.request(XsType.READ, new Uint8Array(0));
  new DataView(bad.buffer).setUint32(12, 1 << 20, true);
  guest.send(bad);
  ring.kick();
  assert.is(guest.get('error'), RingError.PROTO);
  guest.set('connection', RingConnection.RECONNECT);
  const before = notes.n;
  ring.kick();
  assert.is(guest.get('connection'), RingConnection.CONNECTED);
  assert.is(guest.get('error'), RingError.NONE);
  assert.ok(notes.n > before);
  for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) assert.is(guest.get(f), 0);
  assert.is(s.connection(5).error, 0);
  guest.send(guest.request(XsType.GET_DOMAIN_PATH, ['5']));
  ring.kick();
  guest.receive();
  assert.equal(texts(guest.messages()), [['/local/domain/5']]);
});

test('garbage indexes: a producer more than a ring ahead stops the connection with RINGIDX', () => {
  const { s, guest, ring } = setup();
  guest.set('req_prod', 5000);
  assert.is(ring.kick(), false);
  assert.is(guest.get('error'), RingError.RINGIDX);
  assert.is(s.connection(5).error, RingError.RINGIDX);

  const b = setup();
  b.guest.send(b.guest.request(XsType.READ, ['data']));
  b.guest.set('rsp_cons', 0x80000000);
  b.ring.kick();
  assert.is(b.guest.get('error'), RingError.RINGIDX, 'the response side is checked too');
});

test('watch events queued by the toolstack reach the guest through flush', () => {
  const { s, guest, ring } = setup();
  guest.send(guest.request(XsType.WATCH, ['control/shutdown', 'sd']));
  ring.kick();
  guest.receive();
  assert.equal(texts(guest.messages()), [['OK'], ['control/shutdown', 'sd']]);
  let flushes = 0;
  s.onQueued = (domid) => {
    if (domid === 5) flushes++;
  };
  s.handle(0, {
    type: XsType.WRITE,
    reqId: 1,
    txId: 0,
    payload: stringToBytes('/local/domain/5/control/shutdown\0poweroff'),
  });
  assert.ok(flushes > 0);
  ring.flush();
  guest.receive();
  assert.equal(texts(guest.messages()), [['control/shutdown', 'sd']]);
});

test('10 000 watches from a guest: 128 are kept, the rest get E2BIG, nothing grows without bound', () => {
  const { s, guest, ring } = setup();
  const replies: XsMessage[] = [];
  let sent = 0;
  for (let i = 0; i < 100_000 && replies.length < 10_000 * 2 - (10_000 - 128); i++) {
    while (sent < 10_000) {
      const req = guest.request(XsType.WATCH, ['data', `token-${sent}`]);
      if (RING_SIZE - ((guest.get('req_prod') - guest.get('req_cons')) >>> 0) < req.length) break;
      guest.send(req);
      sent++;
    }
    ring.kick();
    guest.receive();
    replies.push(...guest.messages());
    // At most the outstanding replies, each with its first event, and one message half written.
    assert.ok(s.connection(5).out.length <= 2 * s.quotas.outstanding + 1);
  }
  const acks = replies.filter((r) => r.type === XsType.WATCH);
  const errors = replies.filter((r) => r.type === XsType.ERROR);
  assert.is(acks.length, 128);
  assert.is(errors.length, 10_000 - 128);
  assert.ok(errors.every((e) => splitStrings(e.payload)[0] === 'E2BIG'));
  assert.is(s.connection(5).watches.length, 128);
});

test('a guest that keeps writing cannot hold kick() forever: it returns and says there is more', () => {
  const { s, guest, ring } = setup();
  s.onQueued = () => {
    // Another vCPU of the guest: a new request for every reply, and it reads every reply.
    guest.receive();
    guest.messages();
    guest.send(guest.request(XsType.GET_DOMAIN_PATH, ['5']));
  };
  guest.send(guest.request(XsType.GET_DOMAIN_PATH, ['5']));
  assert.is(ring.kick(), true);
});

test('random bytes and random indexes: the backend never throws, always returns, keeps its bounds', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const { s, guest, ring } = setup();
    // Once the guest scribbles on rsp_*, the backend only notices when it next writes.
    let rspGarbage = false;
    for (let step = 0; step < 40; step++) {
      const what = rnd(10);
      if (what < 5) {
        // A plausible request, maybe cut, maybe with a random type.
        const req = guest.request(
          rnd(3) === 0 ? rnd(30) : XsType.WRITE,
          stringToBytes(`data/${rnd(9)}\0${'x'.repeat(rnd(50))}`),
        );
        guest.send(req.subarray(0, rnd(3) === 0 ? rnd(req.length) : req.length));
      } else if (what < 7) {
        guest.send(Uint8Array.from({ length: rnd(64) }, () => rnd(256)));
      } else if (what < 8) {
        const f = (['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'connection'] as const)[rnd(5)]!;
        if (f.startsWith('rsp')) rspGarbage = true;
        guest.set(f, rnd(4) === 0 ? rnd(0xffffffff) : guest.get(f) + rnd(3000) - 1500);
      } else {
        guest.receive(rnd(2000));
        guest.messages();
      }
      ring.kick();
      if (!rspGarbage && s.connection(5).error === 0) assert.ok(withinRing(guest));
      assert.ok(s.connection(5).out.bytes <= s.quotas.outputBytes + 8192);
    }
    assert.is(s.internalError, null);
  }
});

test.run();
