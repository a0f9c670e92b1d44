// The hypercall dispatcher and the hypercalls it serves itself (xen_version,
// console_io, hvm_op, memory_op, sched_op), against a fake domain: every
// argument is guest-controlled, so each check and errno is pinned here, not
// only through a guest on KVM (guest-programs.kvm.test.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Errno,
  HvmOp,
  HvmParam,
  Hypercall,
  SchedOp,
  SharedInfo,
  TimeInfo,
  VcpuInfo,
  XenMem,
  XenVer,
} from '../../src/xen/abi.js';
import { INVALID_GPA } from '../../src/xen/domain.js';
import { ClockField, VcpuField } from '../../src/xen/tables.js';
import { ARGS, BOOT_NS, fakeDomain, PAGE, VA } from '../helpers/xen.js';

const E = (name: keyof typeof Errno): bigint => BigInt(-Errno[name]);
const text = (v: DataView, len: number): string =>
  Buffer.from(v.buffer, v.byteOffset, len).toString('latin1').replace(/\0+$/, '');
const DOMID_SELF = 0x7ff0;

test('an unknown hypercall is -ENOSYS, warned about once under its name (and its sub-op name)', () => {
  const d = fakeDomain();
  for (const nr of [99, Hypercall.multicall, Hypercall.physdev_op, 99, 98])
    assert.is(d.call(nr, [1, 2, 3]), E('ENOSYS'), `hypercall ${nr}`);
  assert.equal([...d.warnings.keys()], ['unimpl-other', 'unimpl-13', 'unimpl-33-other']);
  assert.match(d.warnings.get('unimpl-other')!, /unimplemented hypercall 99/);
  assert.match(d.warnings.get('unimpl-13')!, /unimplemented multicall/);
  assert.match(d.warnings.get('unimpl-33-other')!, /physdev_op with unknown sub-op 1/);
});

test('an unimplemented sub-op of a served hypercall is logged once with its name', () => {
  const d = fakeDomain();
  assert.is(d.call(Hypercall.vcpu_op, [11, 0, 0]), E('ENOSYS'));
  assert.is(d.call(Hypercall.vcpu_op, [11, 0, 0]), E('ENOSYS'));
  assert.is(d.call(Hypercall.sched_op, [6, 0]), E('ENOSYS'));
  assert.is(d.call(Hypercall.hvm_op, [5, 0]), E('ENOSYS'));
  assert.is(d.call(Hypercall.event_channel_op, [12, ARGS]), E('ENOSYS'));
  for (let i = 0; i < 50; i++) d.call(Hypercall.memory_op, [(16 + i) * 64 + 63, 0]);
  assert.equal(
    [...d.warnings.values()],
    [
      'guest called unimplemented vcpu_op VCPUOP_send_nmi (11): answering -ENOSYS',
      'guest called unimplemented sched_op SCHEDOP_watchdog (6): answering -ENOSYS',
      'guest called unimplemented hvm_op HVMOP_flush_tlbs (5): answering -ENOSYS',
      'guest called unimplemented event_channel_op EVTCHNOP_expand_array (12): answering -ENOSYS',
      'guest called memory_op with unknown sub-op 63: answering -ENOSYS',
    ],
    'one line per sub-op; unnamed sub-ops share one; memory_op sub-ops are the low 6 bits',
  );
});

test('a handler that throws is -EINVAL and a warning, not a crash', () => {
  const d = fakeDomain();
  d.env.services.block = () => {
    throw new Error('boom');
  };
  assert.is(d.call(Hypercall.sched_op, [SchedOp.block, 0]), E('EINVAL'));
  assert.match(d.warnings.get(`hypercall-crash-${Hypercall.sched_op}`)!, /handler failed: boom/);
});

test('xen_version: version, pagesize, strings written to the guest, -EFAULT, -ENOSYS', () => {
  const d = fakeDomain();
  const xv = (cmd: number, ptr: bigint | number = 0) => d.call(Hypercall.xen_version, [cmd, ptr]);
  assert.is(xv(XenVer.version), BigInt((4 << 16) | 17));
  assert.is(xv(XenVer.pagesize), 4096n);

  d.ram.fill(0xee, ARGS, ARGS + 2048);
  assert.is(xv(XenVer.extraversion, ARGS), 0n);
  assert.is(text(d.out(16), 16), '-xenkvm');
  assert.is(d.ram[ARGS + 15], 0, 'the 16-byte field is NUL-terminated');
  assert.is(d.ram[ARGS + 16], 0xee, 'nothing past the 16 bytes is written');

  assert.is(xv(XenVer.capabilities, ARGS), 0n);
  assert.is(text(d.out(1024), 1024), 'hvm-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p');
  assert.is(xv(XenVer.changeset, ARGS), 0n);
  assert.match(text(d.out(64), 64), /^xenkvm \d/);

  d.args(8, (v) => v.setUint32(0, 0, true));
  assert.is(xv(XenVer.get_features, ARGS), 0n);
  assert.is(d.out().getUint32(4, true), (1 << 8) | (1 << 9), 'hvm_callback_vector and hvm_safe_pvclock');
  d.args(8, (v) => {
    v.setUint32(0, 1, true);
    v.setUint32(4, 0xffffffff, true);
  });
  assert.is(xv(XenVer.get_features, ARGS), 0n);
  assert.is(d.out().getUint32(4, true), 0, 'submap 1 is empty');

  for (const cmd of [XenVer.extraversion, XenVer.capabilities, XenVer.changeset, XenVer.get_features]) {
    assert.is(xv(cmd, VA.hole), E('EFAULT'), `cmd ${cmd} to an unmapped page`);
    assert.is(xv(cmd, VA.readOnly), E('EFAULT'), `cmd ${cmd} to a read-only page`);
    assert.is(xv(cmd, VA.pastRam), E('EFAULT'), `cmd ${cmd} past the end of RAM`);
    assert.is(xv(cmd, VA.nonCanonical), E('EFAULT'), `cmd ${cmd} to a non-canonical address`);
  }
  d.ram.fill(0xee, ARGS, ARGS + 2048);
  assert.is(xv(XenVer.compile_info, ARGS), 0n);
  assert.match(text(d.out(64), 64), /^xenkvm \d.* \(TypeScript on Node\.js /, 'compiler');
  assert.is(text(new DataView(d.ram.buffer, ARGS + 64, 16), 16), 'xenkvm', 'compile_by');
  assert.is(d.ram[ARGS + 143], 0, 'struct xen_compile_info is 144 bytes');
  assert.is(d.ram[ARGS + 144], 0xee);
  assert.is(xv(XenVer.platform_parameters, ARGS), 0n);
  assert.is(d.out().getBigUint64(0, true), 0xffff800000000000n, 'virt_start: HYPERVISOR_VIRT_START');
  d.ram.fill(0xee, ARGS, ARGS + 32);
  assert.is(xv(XenVer.guest_handle, ARGS), 0n);
  assert.equal([...d.ram.subarray(ARGS, ARGS + 17)], [...new Array(16).fill(0), 0xee], 'a 16-byte handle, all zero');
  for (const cmd of [XenVer.compile_info, XenVer.platform_parameters, XenVer.guest_handle])
    assert.is(xv(cmd, VA.hole), E('EFAULT'), `cmd ${cmd} to an unmapped page`);
  // Xen's own command line and build id are for privileged domains only.
  assert.is(xv(XenVer.commandline, ARGS), E('EPERM'));
  assert.is(xv(XenVer.build_id, ARGS), E('EPERM'));
  for (const cmd of [11, 12, 13, 14, 99, 0xffffffff]) assert.is(xv(cmd, ARGS), E('ENOSYS'), `cmd ${cmd}`);
  assert.match(d.warnings.get('unimpl-17-11')!, /xen_version XENVER_extraversion2 \(11\)/);
});

test('xen_version: a compat guest is offered the 32-bit ABIs only', () => {
  const d = fakeDomain({ mode: 'compat' });
  assert.is(d.call(Hypercall.xen_version, [XenVer.capabilities, ARGS]), 0n);
  assert.is(text(d.out(1024), 1024), 'hvm-3.0-x86_32 hvm-3.0-x86_32p');
});

test('console_io: write hands the bytes over, read is empty, bounds and bad pointers', () => {
  const d = fakeDomain();
  d.ram.set(Buffer.from('hello, xen'), ARGS);
  assert.is(d.call(Hypercall.console_io, [0, 10, ARGS]), 0n);
  assert.equal(d.console, ['hello, xen']);
  assert.is(d.call(Hypercall.console_io, [0, 0, VA.hole]), 0n, 'an empty write touches no memory');
  assert.is(d.call(Hypercall.console_io, [0, 64 * 1024, ARGS]), 0n, '64 KiB in one call');
  assert.is(d.call(Hypercall.console_io, [0, 64 * 1024 + 1, ARGS]), E('EINVAL'));
  assert.is(d.call(Hypercall.console_io, [0, 1n << 40n, ARGS]), E('EINVAL'));
  assert.is(d.call(Hypercall.console_io, [0, 10, VA.hole]), E('EFAULT'));
  assert.is(d.call(Hypercall.console_io, [0, 8, VA.hole - 4n]), E('EFAULT'), 'a buffer running into a hole');
  assert.is(d.console.length, 3);
  assert.is(d.call(Hypercall.console_io, [1, 10, ARGS]), 0n, 'read: nothing to read');
  assert.is(d.call(Hypercall.console_io, [2, 10, ARGS]), E('ENOSYS'));
});

const param = (d: ReturnType<typeof fakeDomain>, index: number, value = 0n, domid = DOMID_SELF) =>
  d.args(16, (v) => {
    v.setUint16(0, domid, true);
    v.setUint32(4, index, true);
    v.setBigUint64(8, value, true);
  });

test('hvm_op set_param / get_param: the domain, the index, CALLBACK_IRQ values', () => {
  const d = fakeDomain();
  const hvm = (op: number, ptr: bigint | number) => d.call(Hypercall.hvm_op, [op, ptr]);
  d.env.domain.hvmParams[HvmParam.STORE_PFN] = 0xfeffcn;
  assert.is(hvm(HvmOp.set_param, param(d, HvmParam.STORE_PFN, 0xfeffen)), E('EPERM'), "the toolstack's param");
  for (const p of [HvmParam.STORE_EVTCHN, HvmParam.CONSOLE_PFN, HvmParam.CONSOLE_EVTCHN])
    assert.is(hvm(HvmOp.set_param, param(d, p, 1n)), E('EPERM'));
  assert.is(d.env.domain.hvmParams[HvmParam.STORE_PFN], 0xfeffcn);
  assert.is(hvm(HvmOp.get_param, param(d, HvmParam.STORE_PFN)), 0n);
  assert.is(d.out().getBigUint64(8, true), 0xfeffcn, 'get_param writes the value back');
  assert.is(hvm(HvmOp.get_param, param(d, HvmParam.STORE_PFN, 0n, 0)), 0n, 'domid 0 is this domain too');
  assert.is(hvm(HvmOp.get_param, param(d, 63)), 0n, 'the last kept index');
  assert.is(d.out().getBigUint64(8, true), 0n);

  assert.is(hvm(HvmOp.get_param, param(d, 1, 0n, 1)), E('ESRCH'), 'another domain');
  assert.is(hvm(HvmOp.set_param, param(d, 1, 5n, 0x7ff1)), E('ESRCH'));
  assert.is(hvm(HvmOp.set_param, param(d, 64, 1n)), E('EINVAL'), 'index past the kept params');
  assert.is(hvm(HvmOp.get_param, param(d, 0xffffffff)), E('EINVAL'));
  assert.is(hvm(HvmOp.get_param, VA.hole), E('EFAULT'));
  param(d, HvmParam.STORE_PFN);
  assert.is(hvm(HvmOp.get_param, VA.readOnly), E('EFAULT'), 'get_param into a read-only page');

  const cb = (type: bigint, low: bigint) => param(d, HvmParam.CALLBACK_IRQ, (type << 56n) | low);
  assert.is(hvm(HvmOp.set_param, cb(2n, 0xf3n)), 0n, 'vector 0xf3');
  assert.is(d.env.domain.hvmParams[HvmParam.CALLBACK_IRQ], (2n << 56n) | 0xf3n);
  assert.is(hvm(HvmOp.set_param, cb(2n, 0x0fn)), E('EINVAL'), 'vector below 0x10');
  assert.is(hvm(HvmOp.set_param, cb(3n, 0xf3n)), E('EINVAL'), 'type 3');
  assert.is(hvm(HvmOp.set_param, cb(0xffn, 0n)), E('EINVAL'), 'type 255');
  assert.is(d.env.domain.hvmParams[HvmParam.CALLBACK_IRQ], (2n << 56n) | 0xf3n, 'refused values change nothing');
  assert.is(hvm(HvmOp.set_param, cb(0n, 0n)), 0n, 'GSI 0: no callback');
  assert.is(hvm(HvmOp.set_param, cb(1n, 0x1234n)), 0n, 'PCI INTx is stored');

  assert.is(hvm(HvmOp.pagetable_dying, VA.hole), 0n, 'pagetable_dying is accepted, its argument unread');
  assert.is(hvm(99, ARGS), E('ENOSYS'));
  assert.is(hvm(2, ARGS), E('ENOSYS'), 'HVMOP 2 (set_pci_intx_level)');
});

test('hvm_op set_evtchn_upcall_vector: checks, per-vCPU vector, an already pending upcall raised', () => {
  const d = fakeDomain({ vcpus: 2 });
  const vec = (vcpu: number, vector: number) =>
    d.call(Hypercall.hvm_op, [
      HvmOp.set_evtchn_upcall_vector,
      d.args(8, (v) => {
        v.setUint32(0, vcpu, true);
        v.setUint8(4, vector);
      }),
    ]);
  assert.is(vec(0, 0x0f), E('EINVAL'));
  assert.is(vec(2, 0xe0), E('ENOENT'), 'vCPU 2 of 2');
  assert.is(vec(2, 0x0f), E('EINVAL'), 'the vector is checked first');
  assert.is(d.call(Hypercall.hvm_op, [HvmOp.set_evtchn_upcall_vector, VA.hole]), E('EFAULT'));
  assert.is(vec(1, 0xe0), 0n);
  assert.is(d.xen.shared.vcpu(1, VcpuField.callbackVector), 0xe0n);
  assert.is(d.xen.upcallVector(1), 0xe0);
  assert.is(d.xen.upcallVector(0), 0, 'vCPU 0 has none');
  assert.equal(d.msis, [], 'nothing pending: nothing sent');

  // An upcall pending before vCPU 0 had a vector is delivered when it gets one.
  const si = d.placeSharedInfo();
  d.xen.markVcpu(0);
  assert.equal(d.msis, []);
  assert.is(d.ram[si + VcpuInfo.upcallPending], 1);
  assert.is(vec(0, 0xe1), 0n);
  assert.equal(d.msis, [[0, 0xe1]]);
});

test('memory_op add_to_physmap(shared_info): placed, zeroed, vcpu_info slots, time and wallclock published', () => {
  const d = fakeDomain({ vcpus: 3 });
  const gpfn = 0x300;
  const si = gpfn * PAGE;
  d.ram.fill(0xaa, si, si + PAGE);
  assert.is(d.placeSharedInfo(gpfn), si);
  assert.is(d.env.domain.sharedInfoGpa, BigInt(si));
  for (let v = 0; v < 3; v++) {
    assert.is(d.xen.shared.vcpu(v, VcpuField.vcpuInfoDefaultGpa), BigInt(si + v * 64));
    assert.is(d.xen.shared.vcpuInfoGpa(v), BigInt(si + v * 64));
    const t = si + v * 64 + VcpuInfo.time64;
    assert.is(d.view.getUint32(t + TimeInfo.version, true), 2, 'version: odd while written, then even');
    assert.is(d.view.getBigUint64(t + TimeInfo.systemTime, true), BOOT_NS);
    assert.is(d.view.getBigUint64(t + TimeInfo.tscTimestamp, true), d.xen.shared.clockWord(ClockField.tsc0));
    assert.is(d.view.getUint32(t + TimeInfo.mul, true), Number(d.xen.shared.clockWord(ClockField.mul)));
    assert.is(d.view.getInt8(t + TimeInfo.shift), Number(d.xen.shared.clockWord(ClockField.shift)));
    assert.is(d.view.getUint8(t + TimeInfo.flags), 1, 'PVCLOCK_TSC_STABLE_BIT');
  }
  assert.is(d.view.getUint32(si + SharedInfo.wcVersion64, true), 2);
  assert.is(d.view.getUint32(si + SharedInfo.wcSec64, true), 1_699_999_990, 'boot time: realtime less guest time');
  assert.is(d.view.getUint32(si + SharedInfo.wcNsec64, true), 0);
  assert.is(d.view.getUint32(si + SharedInfo.wcSecHi64, true), 0);
  assert.is(d.ram[si + SharedInfo.pending64], 0, 'the old contents are gone');
  assert.is(d.ram[si + 4095], 0);

  // Moved: the new page is used, the old one left alone.
  d.ram[si + 5] = 0x55;
  assert.is(d.placeSharedInfo(0x301), 0x301 * PAGE);
  assert.is(d.xen.shared.vcpuInfoGpa(2), BigInt(0x301 * PAGE + 128));
  assert.is(d.ram[si + 5], 0x55);
});

test('memory_op add_to_physmap: compat layout and shared_info layout', () => {
  const d = fakeDomain({ mode: 'compat', vcpus: 1 });
  const si = d.placeSharedInfo(0x123);
  assert.is(d.env.domain.sharedInfoGpa, BigInt(si));
  assert.is(d.view.getUint32(si + SharedInfo.wcSec32, true), 1_699_999_990);
  assert.is(d.view.getUint32(si + SharedInfo.wcVersion32, true), 2);
  assert.is(d.view.getUint32(si + VcpuInfo.time32 + TimeInfo.version, true), 2);
  assert.is(d.view.getBigUint64(si + VcpuInfo.time32 + TimeInfo.systemTime, true), BOOT_NS);
});

test('memory_op add_to_physmap: refused arguments change nothing', () => {
  const d = fakeDomain();
  const pages = d.ram.length / PAGE;
  const atp = (f: { domid?: number; space?: number; idx?: bigint; gpfn?: bigint }, cmd: bigint | number = 7) =>
    d.call(Hypercall.memory_op, [
      cmd,
      d.args(24, (v) => {
        v.setUint16(0, f.domid ?? DOMID_SELF, true);
        v.setUint32(4, f.space ?? 0, true);
        v.setBigUint64(8, f.idx ?? 0n, true);
        v.setBigUint64(16, f.gpfn ?? 0x200n, true);
      }),
    ]);
  assert.is(atp({ domid: 1 }), E('ESRCH'));
  assert.is(atp({ space: 1, idx: 64n }), E('EINVAL'), 'grant frame past the max');
  assert.is(atp({ space: 2 }), E('EINVAL'), 'gmfn');
  assert.is(atp({ space: 0xffffffff }), E('EINVAL'));
  assert.is(atp({ idx: 1n }), E('EINVAL'), 'one shared_info page');
  assert.is(atp({ gpfn: 0xffn }), E('EINVAL'), 'below 1 MiB');
  assert.is(atp({ gpfn: 0xfeffcn }), E('EINVAL'), 'a special page');
  assert.is(atp({ gpfn: 0xfee00n }), E('EINVAL'), 'the LAPIC page');
  assert.is(atp({ gpfn: 1n << 52n }), E('EINVAL'));
  assert.is(d.env.domain.sharedInfoGpa, INVALID_GPA);
  assert.is(d.call(Hypercall.memory_op, [XenMem.add_to_physmap, VA.hole]), E('EFAULT'));
  assert.is(atp({}, XenMem.exchange), E('ENOSYS'), 'XENMEM_exchange');
  assert.is(atp({}, 8), E('ENOSYS'));
  assert.is(d.env.domain.sharedInfoGpa, INVALID_GPA);
  assert.is(atp({ gpfn: BigInt(pages - 1) }), 0n, 'the last page');
  assert.is(atp({ gpfn: 0x100n }, (5n << 32n) | 7n), 0n, 'the command is the low 32 bits');
  assert.is(d.env.domain.sharedInfoGpa, 0x100000n);
});

test('memory_op memory_map: the e820, as many entries as the buffer holds, and how many', () => {
  const d = fakeDomain();
  const BUF = ARGS + 0x100;
  const map = (capacity: number, buffer: bigint | number = BUF) =>
    d.call(Hypercall.memory_op, [
      XenMem.memory_map,
      d.args(16, (v) => {
        v.setUint32(0, capacity, true);
        v.setBigUint64(8, BigInt(buffer), true);
      }),
    ]);
  const entry = (i: number) => [
    Number(d.view.getBigUint64(BUF + i * 20, true)),
    Number(d.view.getBigUint64(BUF + i * 20 + 8, true)),
    d.view.getUint32(BUF + i * 20 + 16, true),
  ];
  d.ram.fill(0xee, BUF, BUF + 200);
  assert.is(map(8), 0n);
  assert.is(d.out().getUint32(0, true), 4, 'nr_entries: the four written');
  assert.equal(entry(0), [0, 0xa0000, 1]);
  assert.equal(entry(1), [0xa0000, 0x60000, 2], 'the legacy area reserved');
  assert.equal(entry(2), [0x100000, d.ram.length - 0x100000, 1]);
  assert.equal(entry(3), [0xfeff8000, 0x8000, 2], 'the special pages reserved');
  assert.is(d.ram[BUF + 80], 0xee, 'nothing past the last entry');
  d.ram.fill(0xee, BUF, BUF + 200);
  assert.is(map(2), 0n);
  assert.is(d.out().getUint32(0, true), 2);
  assert.is(d.ram[BUF + 40], 0xee, 'a short buffer gets the first entries only');
  assert.is(map(0, VA.hole), 0n, 'no room: the buffer is not touched');
  assert.is(d.out().getUint32(0, true), 0);
  assert.is(map(3, VA.hole), E('EFAULT'));
  assert.is(map(3, VA.readOnly), E('EFAULT'));
  assert.is(d.call(Hypercall.memory_op, [XenMem.memory_map, VA.hole]), E('EFAULT'));

  const c = fakeDomain({ mode: 'compat' });
  const r = c.call(Hypercall.memory_op, [
    XenMem.memory_map,
    c.args(8, (v) => {
      v.setUint32(0, 3, true);
      v.setUint32(4, BUF, true);
    }),
  ]);
  assert.is(r, 0n, 'compat: a 32-bit buffer handle at offset 4');
  assert.is(c.out().getUint32(0, true), 3);
  assert.is(c.view.getUint32(BUF + 20 + 16, true), 2);
});

test('an unimplemented memory_op is -ENOSYS, warned about once by name', () => {
  const d = fakeDomain();
  assert.is(d.call(Hypercall.memory_op, [XenMem.exchange, ARGS]), E('ENOSYS'));
  assert.is(d.call(Hypercall.memory_op, [XenMem.exchange, ARGS]), E('ENOSYS'));
  assert.match(d.warnings.get('unimpl-12-11')!, /memory_op XENMEM_exchange \(11\)/);
});

test('sched_op: yield, block, shutdown reasons, unknown commands', () => {
  const d = fakeDomain({ vcpus: 2 });
  const sched = (cmd: number, ptr: bigint | number = 0, vcpu = 0) => d.call(Hypercall.sched_op, [cmd, ptr], vcpu);
  assert.is(sched(SchedOp.yield), 0n);
  d.answer = 0n;
  assert.is(sched(SchedOp.block, 0, 1), 0n);
  assert.equal(d.blocks, [1], 'block waits in the machine, for the calling vCPU');
  const names = ['poweroff', 'reboot', 'suspend', 'crash', 'watchdog', 'soft_reset'];
  for (let reason = 0; reason < names.length; reason++)
    assert.is(
      sched(
        SchedOp.shutdown,
        d.args(4, (v) => v.setUint32(0, reason, true)),
      ),
      0n,
    );
  assert.equal(d.shutdowns, names);
  assert.is(
    sched(
      SchedOp.shutdown,
      d.args(4, (v) => v.setUint32(0, 6, true)),
    ),
    E('EINVAL'),
  );
  assert.is(sched(SchedOp.shutdown, VA.hole), E('EFAULT'));
  assert.is(d.shutdowns.length, 6);
  for (const cmd of [4, 5, 6, 99]) assert.is(sched(cmd, ARGS), E('ENOSYS'), `SCHEDOP ${cmd}`);
});

test('sched_op poll: the port list and timeout reach the machine; bad lists are refused', () => {
  const d = fakeDomain({ vcpus: 2 });
  const LIST = ARGS + 0x100;
  const poll = (ports: number[], timeout: bigint, listAt: bigint | number = LIST, nr = ports.length) => {
    ports.forEach((p, i) => d.view.setUint32(LIST + i * 4, p, true));
    return d.call(
      Hypercall.sched_op,
      [
        SchedOp.poll,
        d.args(24, (v) => {
          v.setBigUint64(0, BigInt(listAt), true);
          v.setUint32(8, nr, true);
          v.setBigUint64(16, timeout, true);
        }),
      ],
      1,
    );
  };
  d.answer = 0n;
  assert.is(poll([3, 7, 4095], 123_456n), 0n);
  assert.equal(d.polls, [{ vcpu: 1, ports: [3, 7, 4095], timeoutNs: 123_456n }]);
  assert.is(poll([], 0n), 0n, 'no ports');
  assert.equal(d.polls[1], { vcpu: 1, ports: [], timeoutNs: 0n });
  const many = Array.from({ length: 128 }, (_, i) => i + 1);
  assert.is(poll(many, 1n), 0n, '128 ports');
  assert.is(d.polls[2]!.ports.length, 128);
  d.answer = E('ETIME');
  assert.is(poll([1], 1n), E('ETIME'), "the machine's answer is returned");
  assert.is(d.polls.length, 4);
  assert.is(poll([...many, 129], 1n), E('EINVAL'), '129 ports');
  assert.is(poll([4096], 1n), E('EINVAL'), 'a port past the 2-level limit');
  assert.is(poll([1, 2], 1n, VA.hole), E('EFAULT'), 'the list unmapped');
  assert.is(poll([1, 2], 1n, VA.hole - 4n), E('EFAULT'), 'the list running into a hole');
  assert.is(d.call(Hypercall.sched_op, [SchedOp.poll, VA.hole]), E('EFAULT'));
  assert.is(d.polls.length, 4, 'refused polls never wait');
});

test('sched_op poll from a compat guest: the 32-bit struct sched_poll (handle, nr_ports, timeout at 8)', () => {
  const d = fakeDomain({ mode: 'compat', vcpus: 1 });
  const LIST = ARGS + 0x100;
  [5, 9].forEach((p, i) => d.view.setUint32(LIST + i * 4, p, true));
  const ptr = d.args(16, (v) => {
    v.setUint32(0, LIST, true);
    v.setUint32(4, 2, true);
    v.setBigUint64(8, 7_000_000n, true);
  });
  assert.is(d.call(Hypercall.sched_op, [SchedOp.poll, ptr]), 0n);
  assert.equal(d.polls, [{ vcpu: 0, ports: [5, 9], timeoutNs: 7_000_000n }]);
  // The struct may end RAM: nothing past its 16 bytes is read.
  const end = d.ram.length - 16;
  d.ram.copyWithin(end, ARGS, ARGS + 16);
  assert.is(d.call(Hypercall.sched_op, [SchedOp.poll, end]), 0n);
  assert.equal(d.polls[1], { vcpu: 0, ports: [5, 9], timeoutNs: 7_000_000n });
});

test.run();
