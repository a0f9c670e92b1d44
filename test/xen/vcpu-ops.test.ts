// VCPUOP_* and set_timer_op against a fake domain: bringing vCPUs up,
// registering vcpu_info, time and runstate areas, and the timers the timer
// thread fires, with Xen's checks and errnos.  Every argument is
// guest-controlled.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { Errno, HvmOp, HvmParam, Hypercall, TimeInfo, VcpuInfo, VcpuOp } from '../../src/xen/abi.js';
import { INVALID_GPA } from '../../src/xen/domain.js';
import { SyncField, VcpuField } from '../../src/xen/tables.js';
import { guestNowNs } from '../../src/xen/time/clock.js';
import { ARGS, BOOT_NS, fakeDomain, PAGE, VA, type FakeDomain } from '../helpers/xen.js';

const E = (name: keyof typeof Errno): bigint => BigInt(-Errno[name]);

const vcpuOp = (d: FakeDomain, cmd: number | bigint, target: number | bigint, ptr: bigint | number = 0, caller = 0) =>
  d.call(Hypercall.vcpu_op, [cmd, target, ptr], caller);
const timerWakes = (d: FakeDomain): number => Atomics.load(d.xen.shared.sync, SyncField.timerWake);
const field = (d: FakeDomain, v: number, f: number): bigint => d.xen.shared.vcpu(v, f);

test('the target vCPU is checked first; unknown ops are -ENOSYS; down is not offered', () => {
  const d = fakeDomain({ vcpus: 2 });
  assert.is(vcpuOp(d, VcpuOp.is_up, 2), E('ENOENT'));
  assert.is(vcpuOp(d, VcpuOp.is_up, 1n << 32n), E('ENOENT'), 'a 64-bit vCPU number is not truncated');
  assert.is(vcpuOp(d, 99, 2), E('ENOENT'));
  assert.is(vcpuOp(d, 99, 0), E('ENOSYS'));
  assert.is(vcpuOp(d, 4, 0), E('ENOSYS'), 'VCPUOP_get_runstate_info');
  assert.is(vcpuOp(d, VcpuOp.down, 1), E('ENOSYS'));
  assert.is(vcpuOp(d, (7n << 32n) | BigInt(VcpuOp.is_up), 0), 1n, 'the command is the low 32 bits');
});

test('initialise, up, is_up: a vCPU starts from the context it was given, once', () => {
  const d = fakeDomain({ vcpus: 3 });
  assert.is(vcpuOp(d, VcpuOp.is_up, 0), 1n, 'vCPU 0 runs from boot');
  assert.is(vcpuOp(d, VcpuOp.is_up, 1), 0n);
  assert.is(vcpuOp(d, VcpuOp.up, 1), E('EINVAL'), 'no context yet');
  const ctx = (mode: number) =>
    d.args(128, (v) => {
      v.setUint32(0, mode, true);
      for (let i = 8; i < 128; i++) v.setUint8(i, i);
    });
  assert.is(vcpuOp(d, VcpuOp.initialise, 1, ctx(2)), E('EINVAL'), 'mode 2');
  assert.is(field(d, 1, VcpuField.startPending), 0n);
  assert.is(vcpuOp(d, VcpuOp.initialise, 1, VA.hole), E('EFAULT'));
  assert.is(vcpuOp(d, VcpuOp.initialise, 1, VA.hole - 64n), E('EFAULT'), 'a context running into a hole');
  assert.is(vcpuOp(d, VcpuOp.initialise, 0, ctx(1)), E('EEXIST'), 'vCPU 0 is up');
  assert.is(vcpuOp(d, VcpuOp.initialise, 1, ctx(1)), 0n);
  assert.equal([...d.xen.shared.contextBytes(1)], [...d.ram.subarray(ARGS, ARGS + 128)]);
  assert.is(field(d, 1, VcpuField.startPending), 1n);
  assert.is(vcpuOp(d, VcpuOp.initialise, 2, ctx(0)), 0n, '32-bit mode');
  assert.is(vcpuOp(d, VcpuOp.up, 1, 0, 0), 0n);
  assert.equal(d.started, [1]);
  assert.is(vcpuOp(d, VcpuOp.is_up, 1), 1n);
  assert.is(vcpuOp(d, VcpuOp.up, 1), 0n, 'up again: nothing to do');
  assert.is(vcpuOp(d, VcpuOp.up, 0), 0n);
  assert.equal(d.started, [1], 'started once');
  assert.is(vcpuOp(d, VcpuOp.initialise, 1, ctx(1)), E('EEXIST'), 'running now');
});

const infoArgs = (d: FakeDomain, mfn: bigint, offset: number) =>
  d.args(16, (v) => {
    v.setBigUint64(0, mfn, true);
    v.setUint32(8, offset, true);
  });

test('register_vcpu_info: moved with its contents, every selector set, upcall raised, once only', () => {
  const d = fakeDomain({ vcpus: 2 });
  const si = d.placeSharedInfo();
  d.call(Hypercall.hvm_op, [
    HvmOp.set_param,
    d.args(16, (v) => {
      v.setUint16(0, 0x7ff0, true);
      v.setUint32(4, HvmParam.CALLBACK_IRQ, true);
      v.setBigUint64(8, (2n << 56n) | 0xf3n, true);
    }),
  ]);
  d.ram[si + 64 + VcpuInfo.upcallMask] = 1; // vCPU 1 masked its upcall in the default slot
  const gpa = 0x300 * PAGE + 0x40;
  d.ram.fill(0xff, gpa - 8, gpa + 72);
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 1, infoArgs(d, 0x300n, 0x40)), 0n, 'for another vCPU');
  assert.is(d.xen.shared.vcpuInfoGpa(1), BigInt(gpa));
  assert.is(d.ram[gpa + VcpuInfo.upcallMask], 1, 'the old contents come along');
  assert.is(d.view.getBigUint64(gpa + VcpuInfo.pendingSel64, true), 0xffffffffffffffffn, 'rescan every word');
  assert.is(d.ram[gpa + VcpuInfo.upcallPending], 1);
  assert.equal(d.msis, [[1, 0xf3]]);
  const version = d.view.getUint32(gpa + VcpuInfo.time64 + TimeInfo.version, true);
  assert.ok(version > 0 && version % 2 === 0, `time published (version ${version})`);
  assert.is(d.view.getBigUint64(gpa + VcpuInfo.time64 + TimeInfo.systemTime, true), BOOT_NS);
  assert.is(d.ram[gpa - 1], 0xff, 'nothing before the area is written');
  assert.is(d.ram[gpa + 64], 0xff, 'nothing after it');

  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 1, infoArgs(d, 0x301n, 0)), E('EBUSY'), 'registered already');
  assert.is(d.xen.shared.vcpuInfoGpa(1), BigInt(gpa));
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, infoArgs(d, 0x300n, 4033)), E('EINVAL'), 'past the page');
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, infoArgs(d, 1024n, 0)), E('EINVAL'), 'past the end of RAM');
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, infoArgs(d, 1n << 60n, 0)), E('EINVAL'));
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, VA.hole), E('EFAULT'));
  assert.is(d.xen.shared.vcpuInfoGpa(0), BigInt(si), 'vCPU 0 still uses its default slot');
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, infoArgs(d, 0x301n, 4032)), 0n, 'the last place in a page');
  assert.is(d.xen.shared.vcpuInfoGpa(0), BigInt(0x301 * PAGE + 4032));
});

test('register_vcpu_info before shared_info: a zeroed area; compat: a 32-bit selector', () => {
  const d = fakeDomain({ mode: 'compat', vcpus: 1 });
  const gpa = 0x200 * PAGE;
  d.ram.fill(0xff, gpa, gpa + 64);
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_info, 0, infoArgs(d, 0x200n, 0)), 0n);
  assert.is(d.ram[gpa + VcpuInfo.upcallMask], 0, 'no previous area: zeroed');
  assert.is(d.view.getUint32(gpa + VcpuInfo.pendingSel32, true), 0xffffffff);
  assert.is(d.view.getUint32(gpa + 8, true), 0, 'nothing past the 32-bit selector');
  assert.is(d.ram[gpa + VcpuInfo.upcallPending], 1);
  assert.is(d.view.getBigUint64(gpa + VcpuInfo.time32 + TimeInfo.systemTime, true), BOOT_NS);
  assert.equal(d.msis, [], 'no vector: no interrupt');
});

test('register_vcpu_time_memory_area: a guest-virtual area, checked to be mapped and writable', () => {
  const d = fakeDomain({ vcpus: 2 });
  const at = (va: bigint) => d.args(8, (v) => v.setBigUint64(0, va, true));
  const area = 0x101020;
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_time_memory_area, 1, at(BigInt(area))), 0n);
  assert.is(field(d, 1, VcpuField.timeInfoGpa), BigInt(area));
  assert.is(d.view.getUint32(area + TimeInfo.version, true), 2);
  assert.is(d.view.getBigUint64(area + TimeInfo.systemTime, true), BOOT_NS);
  assert.is(field(d, 0, VcpuField.timeInfoGpa), INVALID_GPA, 'only for the target vCPU');
  for (const [va, why] of [
    [VA.hole, 'unmapped'],
    [VA.hole - 16n, 'running into a hole'],
    [VA.readOnly, 'read-only'],
    [VA.pastRam, 'past the end of RAM'],
    [VA.nonCanonical, 'not canonical'],
  ] as const)
    assert.is(vcpuOp(d, VcpuOp.register_vcpu_time_memory_area, 0, at(va)), E('EFAULT'), why);
  assert.is(vcpuOp(d, VcpuOp.register_vcpu_time_memory_area, 0, VA.hole), E('EFAULT'), 'the argument itself');
  assert.is(field(d, 0, VcpuField.timeInfoGpa), INVALID_GPA);
});

test('register_runstate_memory_area: running since now, times zero', () => {
  const d = fakeDomain({ vcpus: 2 });
  const area = 0x102000 - 24; // crosses a page boundary, both pages mapped in order
  d.ram.fill(0xff, area - 4, area + 52);
  const before = guestNowNs(d.xen.shared);
  assert.is(
    vcpuOp(
      d,
      VcpuOp.register_runstate_memory_area,
      1,
      d.args(8, (v) => v.setBigUint64(0, BigInt(area), true)),
    ),
    0n,
  );
  assert.is(field(d, 1, VcpuField.runstateGpa), BigInt(area));
  assert.is(d.view.getUint32(area, true), 0, 'RUNSTATE_running');
  const entry = d.view.getBigUint64(area + 8, true);
  assert.ok(entry >= before && entry <= guestNowNs(d.xen.shared), `entry time ${entry} is now`);
  for (let o = 16; o < 48; o += 8) assert.is(d.view.getBigUint64(area + o, true), 0n, `time[${(o - 16) / 8}]`);
  assert.is(d.ram[area - 1], 0xff);
  assert.is(d.ram[area + 48], 0xff);
  assert.is(
    vcpuOp(
      d,
      VcpuOp.register_runstate_memory_area,
      0,
      d.args(8, (v) => v.setBigUint64(0, VA.hole - 8n, true)),
    ),
    E('EFAULT'),
  );
  assert.is(field(d, 0, VcpuField.runstateGpa), INVALID_GPA);
});

test('set_singleshot_timer / stop_singleshot_timer: own vCPU only, VCPU_SSHOTTMR_future, deadline 0', () => {
  const d = fakeDomain({ vcpus: 2 });
  const shot = (deadline: bigint, flags: number, target = 1, caller = 1) =>
    vcpuOp(
      d,
      VcpuOp.set_singleshot_timer,
      target,
      d.args(16, (v) => {
        v.setBigUint64(0, deadline, true);
        v.setUint32(8, flags, true);
      }),
      caller,
    );
  const now = guestNowNs(d.xen.shared);
  assert.ok(now >= BOOT_NS);
  assert.is(shot(now + 1_000_000_000n, 0, 1, 0), E('EINVAL'), "another vCPU's timer");
  const wakes = timerWakes(d);
  assert.is(shot(now + 1_000_000_000n, 1), 0n);
  assert.is(field(d, 1, VcpuField.singleshotNs), now + 1_000_000_000n);
  assert.is(timerWakes(d), wakes + 1, 'the timer thread recomputes its deadline');
  assert.is(field(d, 0, VcpuField.singleshotNs), 0n);
  assert.is(shot(now - 1n, 1), E('ETIME'), 'in the past, with VCPU_SSHOTTMR_future');
  assert.is(field(d, 1, VcpuField.singleshotNs), now + 1_000_000_000n, 'the timer is unchanged');
  assert.is(shot(now - 1n, 0), 0n, 'in the past without the flag: fires at once');
  assert.is(field(d, 1, VcpuField.singleshotNs), now - 1n);
  assert.is(shot(0n, 0), 0n);
  assert.is(field(d, 1, VcpuField.singleshotNs), 1n, 'deadline 0 is armed (long past), not read as stopped');
  assert.is(shot(5n, 0xfffffffe), 0n, 'unknown flag bits are ignored');
  assert.is(vcpuOp(d, VcpuOp.set_singleshot_timer, 1, VA.hole, 1), E('EFAULT'));
  assert.is(vcpuOp(d, VcpuOp.stop_singleshot_timer, 1, 0, 0), E('EINVAL'), "another vCPU's timer");
  assert.is(field(d, 1, VcpuField.singleshotNs), 5n);
  assert.is(vcpuOp(d, VcpuOp.stop_singleshot_timer, 1, 0, 1), 0n);
  assert.is(field(d, 1, VcpuField.singleshotNs), 0n);
});

test('set_periodic_timer / stop_periodic_timer: at least 1 ms, for any vCPU', () => {
  const d = fakeDomain({ vcpus: 2 });
  const period = (ns: bigint, target = 1) =>
    vcpuOp(
      d,
      VcpuOp.set_periodic_timer,
      target,
      d.args(8, (v) => v.setBigUint64(0, ns, true)),
    );
  assert.is(period(999_999n), E('EINVAL'), 'faster than 1 kHz');
  assert.is(field(d, 1, VcpuField.periodicPeriodNs), 0n);
  const before = guestNowNs(d.xen.shared);
  const wakes = timerWakes(d);
  assert.is(period(1_000_000n), 0n);
  assert.is(field(d, 1, VcpuField.periodicPeriodNs), 1_000_000n);
  const next = field(d, 1, VcpuField.periodicNextNs);
  assert.ok(next >= before + 1_000_000n && next <= guestNowNs(d.xen.shared) + 1_000_000n, 'first tick one period on');
  assert.is(timerWakes(d), wakes + 1);
  assert.is(vcpuOp(d, VcpuOp.set_periodic_timer, 1, VA.hole), E('EFAULT'));
  assert.is(vcpuOp(d, VcpuOp.stop_periodic_timer, 1), 0n);
  assert.is(field(d, 1, VcpuField.periodicPeriodNs), 0n);
  assert.is(field(d, 1, VcpuField.periodicNextNs), 0n);
  assert.is(timerWakes(d), wakes + 2);
});

test('set_timer_op: the calling vCPU, 0 stops', () => {
  const d = fakeDomain({ vcpus: 2 });
  assert.is(d.call(Hypercall.set_timer_op, [BOOT_NS + 5n], 1), 0n);
  assert.is(field(d, 1, VcpuField.singleshotNs), BOOT_NS + 5n);
  assert.is(field(d, 0, VcpuField.singleshotNs), 0n);
  assert.is(d.call(Hypercall.set_timer_op, [0], 1), 0n);
  assert.is(field(d, 1, VcpuField.singleshotNs), 0n);
});

test('stopping a timer the timer thread is firing waits for it, boundedly', async () => {
  const d = fakeDomain({ vcpus: 1 });
  // Stuck: the stop returns anyway, after its bounded wait.
  d.xen.shared.setVcpu(0, VcpuField.timerFiring, 1n);
  const t = performance.now();
  assert.is(vcpuOp(d, VcpuOp.stop_singleshot_timer, 0), 0n);
  assert.ok(performance.now() - t >= 150, 'waited (100 rounds of 2 ms) before giving up');
  assert.is(field(d, 0, VcpuField.singleshotNs), 0n);

  // Cleared by another thread: the stop returns once it is.
  const words = d.xen.shared.buffers.vcpus;
  const stride = words.byteLength / 8; // one vCPU
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const a = new BigInt64Array(workerData.words);
     parentPort.on('message', () => { Atomics.store(a, workerData.i, 0n); Atomics.notify(a, workerData.i); });
     parentPort.postMessage('ready');`,
    { eval: true, workerData: { words, i: stride * 0 + VcpuField.timerFiring } },
  );
  await once(w, 'message');
  w.postMessage('clear');
  assert.is(vcpuOp(d, VcpuOp.stop_periodic_timer, 0), 0n);
  assert.is(field(d, 0, VcpuField.timerFiring), 0n, 'returned only once the firing was over');
  await w.terminate();
});

test('compat: set_timer_op takes its deadline in two halves; the runstate area is the packed 44-byte struct', () => {
  const d = fakeDomain({ mode: 'compat', vcpus: 1 });
  const deadline = BOOT_NS + 0x1_2345_6789n; // more than 32 bits of nanoseconds
  assert.is(d.call(Hypercall.set_timer_op, [deadline & 0xffffffffn, deadline >> 32n]), 0n);
  assert.is(field(d, 0, VcpuField.singleshotNs), deadline);
  assert.is(d.call(Hypercall.set_timer_op, [0, 0]), 0n);
  assert.is(field(d, 0, VcpuField.singleshotNs), 0n);

  const area = 0x101000 - 44; // ends a page
  d.ram.fill(0xff, area - 4, area + 48);
  const before = guestNowNs(d.xen.shared);
  const ptr = d.args(8, (v) => v.setBigUint64(0, BigInt(area), true));
  assert.is(vcpuOp(d, VcpuOp.register_runstate_memory_area, 0, ptr), 0n);
  assert.is(d.view.getUint32(area, true), 0, 'RUNSTATE_running');
  const entry = d.view.getBigUint64(area + 4, true);
  assert.ok(entry >= before && entry <= guestNowNs(d.xen.shared), `state_entry_time ${entry} at offset 4`);
  for (let o = 12; o < 44; o += 8) assert.is(d.view.getBigUint64(area + o, true), 0n, `time[${(o - 12) / 8}]`);
  assert.is(d.ram[area + 44], 0xff, 'nothing past the 44 bytes');
});

test.run();
