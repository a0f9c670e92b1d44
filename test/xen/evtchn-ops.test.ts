// EVTCHNOP_* against a fake domain: Xen's checks and errnos, the port table
// each op leaves, and event delivery through the 2-level bits in shared_info
// (pending, mask, the vCPU's selector and upcall_pending) down to the upcall
// MSI.  Every argument is guest-controlled.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno, EvtchnOp, HvmOp, HvmParam, Hypercall, SharedInfo, Virq, VcpuInfo } from '../../src/xen/abi.js';
import { PortType } from '../../src/xen/tables.js';
import { Ctl } from '../../src/xen/vcpu/control-block.js';
import { fakeDomain, VA, type FakeDomain } from '../helpers/xen.js';

const E = (name: keyof typeof Errno): bigint => BigInt(-Errno[name]);
const DOMID_SELF = 0x7ff0;
const VECTOR = 0xf3;

/** The EVTCHNOP argument structs (public/event_channel.h), one writer each. */
function ops(d: FakeDomain) {
  const op = (cmd: number, size: number, fill: (v: DataView) => void) =>
    d.call(Hypercall.event_channel_op, [cmd, d.args(size, fill)]);
  const port = (cmd: number) => (p: number) => op(cmd, 4, (v) => v.setUint32(0, p, true));
  return {
    bindVirq: (virq: number, vcpu: number) =>
      op(EvtchnOp.bind_virq, 12, (v) => {
        v.setUint32(0, virq, true);
        v.setUint32(4, vcpu, true);
      }),
    bindIpi: (vcpu: number) => op(EvtchnOp.bind_ipi, 8, (v) => v.setUint32(0, vcpu, true)),
    allocUnbound: (dom = DOMID_SELF, remote = DOMID_SELF) =>
      op(EvtchnOp.alloc_unbound, 8, (v) => {
        v.setUint16(0, dom, true);
        v.setUint16(2, remote, true);
      }),
    bindInterdomain: (remotePort: number, remoteDom = DOMID_SELF) =>
      op(EvtchnOp.bind_interdomain, 12, (v) => {
        v.setUint16(0, remoteDom, true);
        v.setUint32(4, remotePort, true);
      }),
    bindVcpu: (p: number, vcpu: number) =>
      op(EvtchnOp.bind_vcpu, 8, (v) => {
        v.setUint32(0, p, true);
        v.setUint32(4, vcpu, true);
      }),
    close: port(EvtchnOp.close),
    send: port(EvtchnOp.send),
    unmask: port(EvtchnOp.unmask),
    reset: (dom = DOMID_SELF) => op(EvtchnOp.reset, 2, (v) => v.setUint16(0, dom, true)),
    /** EVTCHNOP_status; on success the fields it wrote. */
    status: (p: number, dom = DOMID_SELF) => {
      const r = op(EvtchnOp.status, 24, (v) => {
        v.setUint16(0, dom, true);
        v.setUint32(4, p, true);
        for (let o = 8; o < 24; o += 4) v.setUint32(o, 0xdeadbeef, true);
      });
      const v = d.out(24);
      return {
        r,
        status: v.getUint32(8, true),
        vcpu: v.getUint32(12, true),
        dom: v.getUint16(16, true),
        value: v.getUint32(16, true),
        remotePort: v.getUint32(20, true),
      };
    },
    /** The port an op wrote back at `offset` of its argument. */
    outPort: (offset: number) => d.out().getUint32(offset, true),
  };
}

/** A 64-bit domain with shared_info placed and upcalls on CALLBACK_IRQ vector 0xf3. */
function deliveringDomain(vcpus = 2): { d: FakeDomain; si: number } {
  const d = fakeDomain({ vcpus });
  const si = d.placeSharedInfo();
  const r = d.call(Hypercall.hvm_op, [
    HvmOp.set_param,
    d.args(16, (v) => {
      v.setUint16(0, DOMID_SELF, true);
      v.setUint32(4, HvmParam.CALLBACK_IRQ, true);
      v.setBigUint64(8, (2n << 56n) | BigInt(VECTOR), true);
    }),
  ]);
  assert.is(r, 0n);
  return { d, si };
}

const bit64 = (d: FakeDomain, base: number, n: number): boolean =>
  ((d.view.getBigUint64(base + (n >> 6) * 8, true) >> BigInt(n & 63)) & 1n) === 1n;
const wakes = (d: FakeDomain, vcpu: number): number => Atomics.load(d.xen.ctl, vcpu * Ctl.SIZE + Ctl.WAKE);

test('bind_virq: lowest free port, per-vCPU and global VIRQs, the checks in order', () => {
  const d = fakeDomain({ vcpus: 2 });
  const o = ops(d);
  assert.is(o.bindVirq(Virq.TIMER, 0), 0n);
  assert.is(o.outPort(8), 1, 'port 0 is reserved: the first port is 1');
  assert.is(o.bindVirq(Virq.TIMER, 1), 0n);
  assert.is(o.outPort(8), 2);
  assert.is(d.xen.shared.virqPort(0, Virq.TIMER), 1);
  assert.is(d.xen.shared.virqPort(1, Virq.TIMER), 2);
  assert.is(o.bindVirq(Virq.TIMER, 0), E('EEXIST'), 'bound already on this vCPU');
  assert.is(o.bindVirq(Virq.CONSOLE, 0), 0n, 'a global VIRQ on vCPU 0');
  assert.is(o.outPort(8), 3);
  assert.is(o.bindVirq(Virq.CONSOLE, 1), E('EINVAL'), 'a global VIRQ elsewhere');
  assert.is(o.bindVirq(Virq.DEBUG, 1), 0n, 'VIRQ_DEBUG is per vCPU');
  assert.is(o.bindVirq(24, 0), E('EINVAL'), 'NR_VIRQS');
  assert.is(o.bindVirq(0xffffffff, 0), E('EINVAL'));
  assert.is(o.bindVirq(Virq.TIMER, 2), E('ENOENT'), 'vCPU 2 of 2');
  assert.is(o.bindVirq(24, 7), E('EINVAL'), 'the VIRQ is checked before the vCPU');
  const s = o.status(3);
  assert.equal([s.r, s.status, s.vcpu, s.value], [0n, PortType.virq, 0, Virq.CONSOLE]);
});

test('bind_ipi, alloc_unbound, bind_interdomain: the ports and what status reports', () => {
  const d = fakeDomain({ vcpus: 2 });
  const o = ops(d);
  assert.is(o.bindIpi(1), 0n);
  const ipi = o.outPort(4);
  assert.is(o.bindIpi(2), E('ENOENT'));
  let s = o.status(ipi);
  assert.equal([s.status, s.vcpu], [PortType.ipi, 1]);

  assert.is(o.allocUnbound(), 0n);
  const a = o.outPort(4);
  assert.is(o.allocUnbound(0, 0), 0n, 'domid 0 is this domain too');
  const spare = o.outPort(4);
  assert.is(o.allocUnbound(1), E('ESRCH'));
  assert.is(o.allocUnbound(DOMID_SELF, 1), E('ESRCH'), 'only this domain may bind');
  s = o.status(a);
  assert.equal([s.status, s.vcpu, s.dom], [PortType.unbound, 0, DOMID_SELF]);

  assert.is(o.bindInterdomain(a), 0n);
  const b = o.outPort(8);
  assert.equal([ipi, a, spare, b], [1, 2, 3, 4]);
  s = o.status(b);
  assert.equal([s.status, s.dom, s.remotePort], [PortType.interdomain, DOMID_SELF, a]);
  s = o.status(a);
  assert.equal([s.status, s.dom, s.remotePort], [PortType.interdomain, DOMID_SELF, b]);
  assert.is(o.bindInterdomain(a), E('EINVAL'), 'bound already');
  assert.is(o.bindInterdomain(ipi), E('EINVAL'), 'not an unbound port');
  assert.is(o.bindInterdomain(0), E('EINVAL'));
  assert.is(o.bindInterdomain(100), E('EINVAL'), 'closed');
  assert.is(o.bindInterdomain(4096), E('EINVAL'));
  assert.is(o.bindInterdomain(spare, 1), E('ESRCH'));
  assert.is(o.bindInterdomain(spare), 0n, 'the spare unbound port still binds');

  s = o.status(0);
  assert.equal([s.r, s.status, s.vcpu, s.value, s.remotePort], [0n, PortType.closed, 0, 0, 0], 'port 0: closed');
  assert.is(o.status(4096).r, E('EINVAL'));
  assert.is(o.status(1, 1).r, E('ESRCH'));
});

test('send: pending bit, selector, upcall_pending and one MSI per new event; masks; unbound and bad ports', () => {
  const { d, si } = deliveringDomain();
  const o = ops(d);
  const pending = si + SharedInfo.pending64;
  const mask = si + SharedInfo.mask64;
  const vi1 = si + 64;
  o.bindIpi(1);
  const ipi = o.outPort(4);
  const before = wakes(d, 1);
  assert.is(o.send(ipi), 0n);
  assert.ok(bit64(d, pending, ipi));
  assert.is(d.view.getBigUint64(vi1 + VcpuInfo.pendingSel64, true), 1n, 'selector word 0');
  assert.is(d.ram[vi1 + VcpuInfo.upcallPending], 1);
  assert.is(d.ram[si + VcpuInfo.upcallPending], 0, 'not vCPU 0');
  assert.equal(d.msis, [[1, VECTOR]], 'the upcall vector to LAPIC 1');
  assert.is(wakes(d, 1), before + 1, 'a blocked vCPU 1 is woken');
  assert.is(o.send(ipi), 0n, 'again while pending');
  assert.is(d.msis.length, 1, 'no second interrupt');

  // A port in selector word 1, masked: pending, not delivered until unmasked.
  for (let p = 2; p < 70; p++) o.bindIpi(0);
  const high = 69;
  d.view.setBigUint64(mask + 8, 1n << 5n, true);
  assert.is(o.send(high), 0n);
  assert.ok(bit64(d, pending, high));
  assert.is(d.view.getBigUint64(si + VcpuInfo.pendingSel64, true), 0n);
  assert.is(d.msis.length, 1);
  assert.is(o.unmask(high), 0n);
  assert.not.ok(bit64(d, mask, high));
  assert.is(d.view.getBigUint64(si + VcpuInfo.pendingSel64, true), 2n, 'selector word 1');
  assert.equal(d.msis.at(-1), [0, VECTOR]);
  assert.is(o.unmask(high), 0n, 'unmasking an unmasked port');
  assert.is(d.msis.length, 2, 'delivers nothing more');

  o.allocUnbound();
  const unbound = o.outPort(4);
  assert.is(o.send(unbound), 0n, 'to an unbound port: dropped');
  assert.not.ok(bit64(d, pending, unbound));
  o.bindVirq(Virq.TIMER, 0);
  assert.is(o.send(o.outPort(8)), E('EINVAL'), 'a VIRQ port');
  assert.is(o.send(0), E('EINVAL'));
  assert.is(o.send(1000), E('EINVAL'), 'closed');
  assert.is(o.send(4096), E('EINVAL'));
  assert.is(o.send(0xffffffff), E('EINVAL'));
  assert.is(o.unmask(4096), E('EINVAL'));
});

test('send on an interdomain port raises its peer, on the vCPU the peer is bound to', () => {
  const { d, si } = deliveringDomain();
  const o = ops(d);
  o.allocUnbound();
  const a = o.outPort(4);
  o.bindInterdomain(a);
  const b = o.outPort(8);
  assert.is(o.bindVcpu(a, 1), 0n);
  assert.is(o.send(b), 0n);
  assert.ok(bit64(d, si + SharedInfo.pending64, a), 'the peer is pending');
  assert.not.ok(bit64(d, si + SharedInfo.pending64, b), 'the sender is not');
  assert.equal(d.msis, [[1, VECTOR]]);
  assert.is(o.status(a).vcpu, 1);
  assert.is(o.send(a), 0n);
  assert.ok(bit64(d, si + SharedInfo.pending64, b));
  assert.equal(d.msis, [
    [1, VECTOR],
    [0, VECTOR],
  ]);
});

test("a vCPU's own upcall vector wins over CALLBACK_IRQ; no vector: marked, woken, no MSI", () => {
  const d = fakeDomain({ vcpus: 2 });
  const si = d.placeSharedInfo();
  const o = ops(d);
  o.bindIpi(0);
  const p0 = o.outPort(4);
  o.bindIpi(1);
  const p1 = o.outPort(4);
  const w = wakes(d, 0);
  assert.is(o.send(p0), 0n);
  assert.equal(d.msis, [], 'no vector yet');
  assert.is(d.ram[si + VcpuInfo.upcallPending], 1);
  assert.is(wakes(d, 0), w + 1);
  d.call(Hypercall.hvm_op, [
    HvmOp.set_evtchn_upcall_vector,
    d.args(8, (v) => {
      v.setUint32(0, 1, true);
      v.setUint8(4, 0x40);
    }),
  ]);
  assert.is(o.send(p1), 0n);
  assert.equal(d.msis, [[1, 0x40]]);
});

test('events before shared_info exists are dropped, not a crash', () => {
  const d = fakeDomain();
  const o = ops(d);
  o.bindIpi(0);
  assert.is(o.send(o.outPort(4)), 0n);
  assert.is(o.unmask(1), 0n);
  assert.equal(d.msis, []);
});

test('close: unbinds the VIRQ, detaches the interdomain peer, clears pending, frees the port', () => {
  const { d, si } = deliveringDomain();
  const o = ops(d);
  o.bindVirq(Virq.TIMER, 1);
  const timer = o.outPort(8);
  o.bindVirq(Virq.CONSOLE, 0);
  const console = o.outPort(8);
  assert.is(o.bindVcpu(console, 1), 0n);
  o.allocUnbound();
  const a = o.outPort(4);
  o.bindInterdomain(a);
  const b = o.outPort(8);

  assert.is(o.close(timer), 0n);
  assert.is(d.xen.shared.virqPort(1, Virq.TIMER), 0);
  assert.is(o.status(timer).status, PortType.closed);
  assert.is(o.close(console), 0n, 'a global VIRQ moved to vCPU 1');
  assert.is(d.xen.shared.virqPort(0, Virq.CONSOLE), 0, 'is unbound where it was bound');
  assert.is(o.bindVirq(Virq.CONSOLE, 0), 0n, 'and can be bound again');
  assert.is(o.outPort(8), timer, 'the lowest free port');

  o.send(a);
  assert.ok(bit64(d, si + SharedInfo.pending64, b));
  assert.is(o.close(b), 0n);
  assert.not.ok(bit64(d, si + SharedInfo.pending64, b), 'a closed port is not left pending');
  const s = o.status(a);
  assert.equal([s.status, s.dom], [PortType.unbound, DOMID_SELF], 'the peer is unbound again');
  assert.is(o.bindInterdomain(a), 0n, 'and can be bound again');

  assert.is(o.close(b + 10), E('EINVAL'), 'closed');
  assert.is(o.close(0), E('EINVAL'));
  assert.is(o.close(4096), E('EINVAL'));
});

test('bind_vcpu: which ports may move, and the checks in order', () => {
  const d = fakeDomain({ vcpus: 2 });
  const o = ops(d);
  o.bindIpi(0);
  const ipi = o.outPort(4);
  o.bindVirq(Virq.TIMER, 0);
  const timer = o.outPort(8);
  o.bindVirq(Virq.CONSOLE, 0);
  const global = o.outPort(8);
  o.allocUnbound();
  const unbound = o.outPort(4);
  assert.is(o.bindVcpu(ipi, 1), E('EINVAL'), 'an IPI port');
  assert.is(o.bindVcpu(timer, 1), E('EINVAL'), 'a per-vCPU VIRQ');
  assert.is(o.bindVcpu(global, 1), 0n, 'a global VIRQ');
  assert.is(o.bindVcpu(unbound, 1), 0n, 'an unbound port');
  assert.is(o.status(unbound).vcpu, 1);
  assert.is(o.bindVcpu(unbound, 2), E('ENOENT'));
  assert.is(o.bindVcpu(99, 2), E('ENOENT'), 'the vCPU is checked before the port');
  assert.is(o.bindVcpu(99, 0), E('EINVAL'), 'closed');
  assert.is(o.bindVcpu(0, 0), E('EINVAL'));
  assert.is(o.bindVcpu(4096, 0), E('EINVAL'));
});

test('reset closes every port; only for this domain', () => {
  const d = fakeDomain({ vcpus: 2 });
  const o = ops(d);
  o.bindVirq(Virq.TIMER, 1);
  o.bindIpi(0);
  o.allocUnbound();
  assert.is(o.reset(1), E('ESRCH'));
  assert.is(o.status(1).status, PortType.virq);
  assert.is(o.reset(), 0n);
  for (const p of [1, 2, 3]) assert.is(o.status(p).status, PortType.closed, `port ${p}`);
  assert.is(d.xen.shared.virqPort(1, Virq.TIMER), 0);
  assert.is(o.bindVirq(Virq.TIMER, 1), 0n);
  assert.is(o.outPort(8), 1);
});

test('unknown and unoffered ops are -ENOSYS; the command is the low 32 bits', () => {
  const d = fakeDomain();
  for (const cmd of [EvtchnOp.bind_pirq, EvtchnOp.init_control, 12, 13, 99, 0xffffffff])
    assert.is(d.call(Hypercall.event_channel_op, [cmd, d.args(16)]), E('ENOSYS'), `EVTCHNOP ${cmd}`);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.init_control, VA.hole]), E('ENOSYS'), 'FIFO: not read');
  assert.is(d.call(Hypercall.event_channel_op, [99, VA.hole]), E('ENOSYS'));
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.bind_pirq, VA.hole]), E('EFAULT'), 'copied in first');
  assert.is(d.call(Hypercall.event_channel_op, [(1n << 32n) | BigInt(EvtchnOp.alloc_unbound), d.args(8)]), 0n);
  assert.is(ops(d).outPort(4), 1);
});

test('a bad argument pointer is -EFAULT before anything changes; a failed copy-back after it', () => {
  const d = fakeDomain({ vcpus: 2 });
  const o = ops(d);
  for (const cmd of [0, 1, 3, 4, 5, 6, 7, 8, 9, 10]) {
    assert.is(d.call(Hypercall.event_channel_op, [cmd, VA.hole]), E('EFAULT'), `EVTCHNOP ${cmd}`);
    assert.is(d.call(Hypercall.event_channel_op, [cmd, VA.hole - 1n]), E('EFAULT'), `EVTCHNOP ${cmd} straddling`);
    assert.is(d.call(Hypercall.event_channel_op, [cmd, VA.pastRam]), E('EFAULT'), `EVTCHNOP ${cmd} past RAM`);
  }
  assert.is(o.status(1).status, PortType.closed, 'nothing was bound');
  // bind_ipi from a read-only page: bound, but the port cannot be written back (as Xen).
  d.view.setUint32(Number(VA.readOnly), 1, true);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.bind_ipi, VA.readOnly]), E('EFAULT'));
  const s = o.status(1);
  assert.equal([s.status, s.vcpu], [PortType.ipi, 1]);
  // Ops without out-fields need no write access.
  d.view.setUint32(Number(VA.readOnly), 1, true);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.close, VA.readOnly]), 0n);
});

test('compat: 1024 ports, 32-bit pending, mask and selector words', () => {
  const d = fakeDomain({ mode: 'compat', vcpus: 1 });
  const si = d.placeSharedInfo();
  const o = ops(d);
  for (let p = 1; p <= 40; p++) {
    assert.is(o.allocUnbound(), 0n);
    assert.is(o.outPort(4), p);
  }
  o.bindInterdomain(40);
  const b = o.outPort(8);
  assert.is(b, 41);
  assert.is(o.send(b), 0n);
  assert.is(d.view.getUint32(si + SharedInfo.pending32 + 4, true), 1 << 8, 'port 40: word 1, bit 8');
  assert.is(d.view.getUint32(si + VcpuInfo.pendingSel32, true), 2, 'selector bit 1');
  assert.is(d.ram[si + VcpuInfo.upcallPending], 1);
  assert.is(o.bindInterdomain(3), 0n);
  d.view.setUint32(si + SharedInfo.mask32, 1 << 3, true);
  assert.is(o.send(o.outPort(8)), 0n);
  assert.ok(d.xen.isPending(3));
  assert.ok(d.xen.isMasked(3), 'mask32 is at offset 2176');
  assert.is(d.view.getUint32(si + VcpuInfo.pendingSel32, true), 2, 'a masked port selects nothing');
  assert.is(o.send(1024), E('EINVAL'), 'port 1024');
  assert.is(o.status(1024).r, E('EINVAL'));
  assert.is(o.unmask(1024), E('EINVAL'));
  while (o.allocUnbound() === 0n);
  assert.is(o.allocUnbound(), E('ENOSPC'), 'the table is full at 1023 ports');
  assert.is(o.bindIpi(0), E('ENOSPC'));
  assert.is(o.status(1023).status, PortType.unbound);
});

test.run();
