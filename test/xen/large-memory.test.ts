// Domains whose guest-physical addresses pass 2 GiB (numbers beyond the
// signed 32 bits JavaScript's shifts work in) and 4 GiB (RAM above the
// 32-bit hole, at RAM offsets below its addresses): shared_info and
// vcpu_info placed there, events delivered there.  The RAM is a plain
// buffer, backed only where touched.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Errno, EvtchnOp, Hypercall, SharedInfo, VcpuInfo, VcpuOp, XenMem } from '../../src/xen/abi.js';
import { HIGH_RAM_BASE, LOW_RAM_END } from '../../src/xen/memory/layout.js';
import { fakeDomain, PAGE, type FakeDomain } from '../helpers/xen.js';

const GiB = 2 ** 30;

/** A domain of `memBytes`, or null (said why) where the address space cannot be had. */
function tryDomain(memBytes: number): FakeDomain | null {
  try {
    return fakeDomain({ vcpus: 2, memBytes });
  } catch (e) {
    console.log(`  not run: cannot allocate ${memBytes} bytes of address space here: ${(e as Error).message}`);
    return null;
  }
}

/** Binds an IPI to vCPU 1 and sends it; returns the port. */
function ipiToVcpu1(d: FakeDomain): number {
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.bind_ipi, d.args(8, (v) => v.setUint32(0, 1, true))]), 0n);
  const port = d.out().getUint32(4, true);
  assert.is(d.call(Hypercall.event_channel_op, [EvtchnOp.send, d.args(4, (v) => v.setUint32(0, port, true))]), 0n);
  return port;
}

test('a 2 GiB domain: shared_info and vcpu_info above 2 GiB, events delivered there', () => {
  const d = tryDomain(2 * GiB + 4 * 2 ** 20);
  if (!d) return;
  const si = d.placeSharedInfo((2 * GiB) / PAGE);
  assert.is(si, 2 * GiB);
  assert.is(d.xen.shared.vcpuInfoGpa(1), BigInt(2 * GiB + 64));
  const mfn = BigInt((2 * GiB) / PAGE + 1);
  assert.is(
    d.call(Hypercall.vcpu_op, [VcpuOp.register_vcpu_info, 1, d.args(16, (v) => v.setBigUint64(0, mfn, true))]),
    0n,
  );
  const vi = 2 * GiB + PAGE;
  d.view.setBigUint64(vi + VcpuInfo.pendingSel64, 0n, true);
  d.ram[vi + VcpuInfo.upcallPending] = 0;
  const port = ipiToVcpu1(d);
  assert.ok(d.xen.isPending(port));
  assert.is(d.view.getBigUint64(si + SharedInfo.pending64, true), 1n << BigInt(port));
  assert.is(d.view.getBigUint64(vi + VcpuInfo.pendingSel64, true), 1n, 'the selector in the moved vcpu_info');
  assert.is(d.ram[vi + VcpuInfo.upcallPending], 1);
});

test('RAM above 4 GiB: shared_info there lives at its RAM offset; fixed pages in the hole are refused', () => {
  const d = tryDomain(LOW_RAM_END + 4 * 2 ** 20);
  if (!d) return;
  const atp = (gpfn: number) =>
    d.call(Hypercall.memory_op, [
      XenMem.add_to_physmap,
      d.args(24, (v) => {
        v.setUint16(0, 0x7ff0, true);
        v.setBigUint64(16, BigInt(gpfn), true);
      }),
    ]);
  assert.is(atp(0xfee00), BigInt(-Errno.EINVAL), 'the LAPIC page in the hole');
  assert.is(atp(0xfefff), BigInt(-Errno.EINVAL), 'a special page in the hole');
  assert.is(d.placeSharedInfo(HIGH_RAM_BASE / PAGE + 1), HIGH_RAM_BASE + PAGE);
  const at = LOW_RAM_END + PAGE; // its RAM offset
  assert.is(d.view.getUint32(at + SharedInfo.wcVersion64, true), 2, 'the wallclock is written at the RAM offset');
  const port = ipiToVcpu1(d);
  assert.is(d.view.getBigUint64(at + SharedInfo.pending64, true), 1n << BigInt(port));
  assert.is(d.ram[at + 64 + VcpuInfo.upcallPending], 1, "vCPU 1's default vcpu_info");
});

test.run();
