// Guest-physical addresses of 2 GiB and more are numbers past the signed
// 32 bits JavaScript's shift operators work in: a domain this large must
// build, place shared_info and vcpu_info high, and deliver events there.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EvtchnOp, Hypercall, SharedInfo, VcpuInfo, VcpuOp } from '../../src/xen/abi.js';
import { fakeDomain, PAGE } from '../helpers/xen.js';

const GiB = 2 ** 30;

test('a 2 GiB domain: shared_info and vcpu_info above 2 GiB, events delivered there', () => {
  const d = fakeDomain({ vcpus: 2, memBytes: 2 * GiB + 4 * 2 ** 20 }); // virtual: only touched pages are backed
  const si = d.placeSharedInfo((2 * GiB) / PAGE);
  assert.is(si, 2 * GiB);
  assert.is(d.env.domain.sharedInfoGpa, BigInt(2 * GiB));
  assert.is(d.xen.shared.vcpuInfoGpa(1), BigInt(2 * GiB + 64));
  assert.is(d.placeSharedInfo(d.ram.length / PAGE - 1), d.ram.length - PAGE, 'the last page');
  const top = d.ram.length - PAGE;

  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.bind_ipi, d.args(8, (v) => v.setUint32(0, 1, true))]), 0n);
  const port = d.out().getUint32(4, true);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.send, d.args(4, (v) => v.setUint32(0, port, true))]), 0n);
  assert.ok(d.xen.isPending(port));
  assert.is(d.view.getBigUint64(top + SharedInfo.pending64, true), 1n << BigInt(port));
  assert.is(d.ram[top + 64 + VcpuInfo.upcallPending], 1, "vCPU 1's upcall");

  const mfn = BigInt((2 * GiB) / PAGE + 1);
  const info = d.args(16, (v) => v.setBigUint64(0, mfn, true));
  assert.is(d.call(Hypercall.vcpu_op, [VcpuOp.register_vcpu_info, 1, info]), 0n);
  const vi = 2 * GiB + PAGE;
  assert.is(d.xen.shared.vcpuInfoGpa(1), BigInt(vi));
  assert.is(d.view.getBigUint64(vi + VcpuInfo.pendingSel64, true), 0xffffffffffffffffn);
  d.view.setBigUint64(vi + VcpuInfo.pendingSel64, 0n, true);
  d.ram[vi + VcpuInfo.upcallPending] = 0;
  d.xen.clearPending(port);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.send, d.args(4, (v) => v.setUint32(0, port, true))]), 0n);
  assert.is(d.view.getBigUint64(vi + VcpuInfo.pendingSel64, true), 1n, 'the selector in the moved vcpu_info');
  assert.is(d.ram[vi + VcpuInfo.upcallPending], 1);
});

test.run();
