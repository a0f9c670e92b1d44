// VCPUOP_*, set_timer_op and the per-vCPU parts of HVMOP: registrations
// (vcpu_info, time area, runstate), timers, and bringing up other vCPUs.
// Timers are deadlines in the shared vCPU table; the timer thread fires them.
import {
  Errno,
  HVM_CONTEXT_MODES,
  MIN_PERIODIC_NS,
  VCPU_INFO_SIZE,
  VCPU_SSHOTTMR_future,
  VcpuInfo,
  VcpuOp,
} from '../abi.js';
import { INVALID_GPA } from '../domain.js';
import { HVM_CONTEXT_BYTES, VcpuField } from '../tables.js';
import { guestNowNs, publishVcpuTime } from '../time/clock.js';
import type { HypercallCall, HypercallEnv } from '../hypercall/types.js';

const err = (e: number): bigint => BigInt(-e);
const PAGE = 4096;

function registerVcpuInfo(env: HypercallEnv, vcpu: number, ptr: bigint): bigint {
  const raw = env.mem.read(ptr, 16);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const mfn = v.getBigUint64(0, true);
  const offset = v.getUint32(8, true);
  const x = env.xen;
  if (x.shared.vcpu(vcpu, VcpuField.vcpuInfoGpa) !== INVALID_GPA) return err(Errno.EBUSY);
  // 8-byte alignment: the emulator updates its words with atomic 64-bit operations.
  if (offset > PAGE - VCPU_INFO_SIZE || offset % 8 !== 0) return err(Errno.EINVAL);
  if (mfn > 0xf_ffff_ffffn) return err(Errno.EINVAL);
  const gpa = (mfn << 12n) + BigInt(offset);
  const dst = x.phys.offsetOf(gpa, VCPU_INFO_SIZE);
  if (dst < 0) return err(Errno.EINVAL);
  const old = x.vcpuInfo(vcpu);
  if (old >= 0) x.phys.bytes(dst, VCPU_INFO_SIZE).set(x.phys.bytes(old, VCPU_INFO_SIZE));
  else x.phys.fill(0, dst, VCPU_INFO_SIZE);
  x.shared.setVcpu(vcpu, VcpuField.vcpuInfoGpa, gpa);
  publishVcpuTime(x, vcpu);
  // As Xen does on a move: make the guest rescan every selector word.
  const long = x.shared.domain.longMode;
  if (long) x.phys.setU64(dst + VcpuInfo.pendingSel64, 0xffffffffffffffffn);
  else x.phys.setU32(dst + VcpuInfo.pendingSel32, 0xffffffff);
  x.phys.setU8(dst + VcpuInfo.upcallPending, 0);
  x.markVcpu(vcpu);
  return 0n;
}

/**
 * Guest-virtual address of an area → GPA, checked to be RAM, physically
 * contiguous and inside one of the emulator's views of RAM (it writes the
 * area in place).
 */
function areaGpa(env: HypercallEnv, ptr: bigint, size: number): bigint | null {
  const raw = env.mem.read(ptr, 8);
  if (!raw) return null;
  const va = new DataView(raw.buffer).getBigUint64(0, true);
  const gpa = env.mem.gpaOf(va, size);
  return gpa < 0 || !env.mem.ram.holds(env.mem.ram.offsetOf(gpa, size), size) ? null : BigInt(gpa);
}

function setSingleshot(env: HypercallEnv, vcpu: number, deadline: bigint): void {
  env.xen.shared.setVcpu(vcpu, VcpuField.singleshotNs, deadline);
  env.xen.shared.wakeTimers();
  waitOutFiring(env, vcpu);
}

/**
 * After a timer of `vcpu` was changed: if the timer thread was firing the old
 * one at that moment, let it finish, so that once the hypercall returns no
 * tick of the old timer can still arrive (Xen's stop_timer is synchronous).
 * The timer thread sets the flag before its compare-and-set and clears it
 * (with a notify) after delivery: microseconds, unless it was preempted.
 */
function waitOutFiring(env: HypercallEnv, vcpu: number): void {
  // Bounded: a timer thread preempted for long on a loaded host delays the
  // hypercall, never hangs it.
  const s = env.xen.shared;
  for (let i = 0; i < 100 && s.vcpu(vcpu, VcpuField.timerFiring) !== 0n; i++)
    s.waitVcpuWord(vcpu, VcpuField.timerFiring, 1n, 2);
}

export function vcpuOp(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0] & 0xffffffffn);
  const target = call.args[1]!;
  const ptr = call.args[2]!;
  const x = env.xen;
  if (target >= BigInt(x.nrVcpus)) return err(Errno.ENOENT);
  const vcpu = Number(target);
  const self = vcpu === call.vcpu;
  switch (cmd) {
    case VcpuOp.is_up:
      return x.shared.vcpu(vcpu, VcpuField.up);
    case VcpuOp.initialise: {
      if (x.shared.vcpu(vcpu, VcpuField.up) !== 0n) return err(Errno.EEXIST);
      const raw = env.mem.read(ptr, HVM_CONTEXT_BYTES);
      if (!raw) return err(Errno.EFAULT);
      if (!HVM_CONTEXT_MODES.has(new DataView(raw.buffer).getUint32(0, true))) return err(Errno.EINVAL);
      x.shared.contextBytes(vcpu).set(raw);
      x.shared.setVcpu(vcpu, VcpuField.startPending, 1n);
      return 0n;
    }
    case VcpuOp.up:
      if (x.shared.vcpu(vcpu, VcpuField.up) !== 0n) return 0n;
      if (x.shared.vcpu(vcpu, VcpuField.startPending) === 0n) return err(Errno.EINVAL);
      x.shared.setVcpu(vcpu, VcpuField.up, 1n);
      env.services.startVcpu(vcpu);
      return 0n;
    case VcpuOp.down:
      // Taking a vCPU offline is not emulated; guests treat this as unsupported.
      return err(Errno.ENOSYS);
    case VcpuOp.register_vcpu_info:
      return registerVcpuInfo(env, vcpu, ptr);
    case VcpuOp.register_vcpu_time_memory_area: {
      const gpa = areaGpa(env, ptr, 32);
      if (gpa === null) return err(Errno.EFAULT);
      x.shared.setVcpu(vcpu, VcpuField.timeInfoGpa, gpa);
      publishVcpuTime(x, vcpu);
      return 0n;
    }
    case VcpuOp.register_runstate_memory_area: {
      // struct vcpu_runstate_info { int state; u64 entry_time; u64 time[4] }:
      // 48 bytes for 64-bit callers, 44 packed (entry time at 4) for compat ones.
      const size = call.is64 ? 48 : 44;
      const gpa = areaGpa(env, ptr, size);
      if (gpa === null) return err(Errno.EFAULT);
      x.shared.setVcpu(vcpu, VcpuField.runstateGpa, gpa);
      // state = RUNSTATE_running (0), entry time now, times zero.
      const o = x.phys.offsetOf(gpa, size);
      x.phys.fill(0, o, size);
      x.phys.setU64(o + (call.is64 ? 8 : 4), guestNowNs(x.shared));
      return 0n;
    }
    case VcpuOp.set_singleshot_timer: {
      if (!self) return err(Errno.EINVAL);
      const raw = env.mem.read(ptr, 16);
      if (!raw) return err(Errno.EFAULT);
      const v = new DataView(raw.buffer);
      const deadline = v.getBigUint64(0, true);
      if ((v.getUint32(8, true) & VCPU_SSHOTTMR_future) !== 0 && deadline < guestNowNs(x.shared))
        return err(Errno.ETIME);
      // 0 would read as "disarmed": a deadline of 0 is long past, fire at once.
      setSingleshot(env, vcpu, deadline === 0n ? 1n : deadline);
      return 0n;
    }
    case VcpuOp.stop_singleshot_timer:
      if (!self) return err(Errno.EINVAL);
      setSingleshot(env, vcpu, 0n);
      return 0n;
    case VcpuOp.set_periodic_timer: {
      const raw = env.mem.read(ptr, 8);
      if (!raw) return err(Errno.EFAULT);
      const period = new DataView(raw.buffer).getBigUint64(0, true);
      if (period < MIN_PERIODIC_NS) return err(Errno.EINVAL);
      x.shared.setVcpu(vcpu, VcpuField.periodicNextNs, guestNowNs(x.shared) + period);
      x.shared.setVcpu(vcpu, VcpuField.periodicPeriodNs, period);
      x.shared.wakeTimers();
      return 0n;
    }
    case VcpuOp.stop_periodic_timer:
      x.shared.setVcpu(vcpu, VcpuField.periodicPeriodNs, 0n);
      x.shared.setVcpu(vcpu, VcpuField.periodicNextNs, 0n);
      x.shared.wakeTimers();
      waitOutFiring(env, vcpu);
      return 0n;
    default:
      return err(Errno.ENOSYS);
  }
}

/** set_timer_op(timeout): the calling vCPU's single-shot timer; 0 stops it.  Compat callers pass it as (low, high). */
export function setTimerOp(env: HypercallEnv, call: HypercallCall): bigint {
  setSingleshot(env, call.vcpu, call.is64 ? call.args[0]! : (call.args[1]! << 32n) | call.args[0]!);
  return 0n;
}
