// Hypercall dispatch and the hypercalls of a booting guest.  Every argument is
// guest-controlled: each handler validates and answers with a negated Xen
// errno, and nothing here may throw for any register values.
import {
  ConsoleIo,
  DOMID_SELF,
  Errno,
  HVM_NR_PARAMS,
  HvmOp,
  HvmParam,
  Hypercall,
  SCHEDOP_POLL_MAX_PORTS,
  SchedOp,
  ShutdownReason,
  VCPU_INFO_SIZE,
  XEN_EXTRAVERSION,
  XEN_LEGACY_MAX_VCPUS,
  XEN_VERSION_MAJOR,
  XEN_VERSION_MINOR,
  XenFeat,
  XenMapSpace,
  XenMem,
  XenVer,
  type ShutdownReasonName,
} from '../abi.js';
import { eventChannelOp } from '../evtchn/ops.js';
import { grantTableOp, mapGrantFrame, placeSharedInfoFrame } from '../gnttab/ops.js';
import { VcpuField } from '../tables.js';
import { publishVcpuTime, publishWallclock } from '../time/clock.js';
import { setTimerOp, vcpuOp } from '../vcpu/ops.js';
import type { HypercallCall, HypercallEnv } from './types.js';
import { hypercallName, unimplementedCall } from './names.js';
import { packageVersion } from '../../version.js';
import { memoryOpOther } from '../memory/ops.js';

type Handler = (env: HypercallEnv, call: HypercallCall) => bigint;

const err = (e: number): bigint => BigInt(-e);
/** Largest console write served in one call; Xen also works in bounded chunks. */
const CONSOLE_WRITE_MAX = 64 * 1024;

/** NUL-padded latin1 string of exactly `size` bytes (Xen's fixed-size version strings). */
function fixedString(text: string, size: number): Uint8Array {
  const buf = new Uint8Array(size);
  buf.set(Buffer.from(text, 'latin1').subarray(0, size - 1));
  return buf;
}

/** struct xen_compile_info: compiler[64], compile_by[16], compile_domain[32], compile_date[32]. */
function compileInfo(): Uint8Array {
  const out = new Uint8Array(144);
  out.set(fixedString(`xenkvm ${packageVersion()} (TypeScript on Node.js ${process.versions.node})`, 64), 0);
  out.set(fixedString('xenkvm', 16), 64);
  out.set(fixedString('', 32), 80);
  out.set(fixedString('', 32), 112);
  return out;
}

/** XENVER_platform_parameters: where Xen's own mappings start in the guest's address space (x86-64 / compat). */
const HYPERVISOR_VIRT_START = 0xffff800000000000n;
const HYPERVISOR_COMPAT_VIRT_START = 0xf5800000n;

/** xen_version's answers, sub-op by sub-op (docs/xen-abi.md "xen_version"). */
function xenVersion(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0] & 0xffffffffn);
  const arg = call.args[1]!;
  const put = (bytes: Uint8Array): bigint => (env.mem.write(arg, bytes) ? 0n : err(Errno.EFAULT));
  switch (cmd) {
    case XenVer.version:
      return BigInt((XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR);
    case XenVer.extraversion:
      return put(fixedString(XEN_EXTRAVERSION, 16));
    case XenVer.compile_info:
      return put(compileInfo());
    case XenVer.capabilities:
      return put(
        fixedString(
          call.is64 ? 'hvm-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p' : 'hvm-3.0-x86_32 hvm-3.0-x86_32p',
          1024,
        ),
      );
    case XenVer.changeset:
      return put(fixedString(`xenkvm ${packageVersion()}`, 64));
    case XenVer.platform_parameters: {
      const bytes = new Uint8Array(call.is64 ? 8 : 4);
      const v = new DataView(bytes.buffer);
      if (call.is64) v.setBigUint64(0, HYPERVISOR_VIRT_START, true);
      else v.setUint32(0, Number(HYPERVISOR_COMPAT_VIRT_START), true);
      return put(bytes);
    }
    case XenVer.get_features: {
      const info = env.mem.read(arg, 8);
      if (!info) return err(Errno.EFAULT);
      const v = new DataView(info.buffer);
      const idx = v.getUint32(0, true);
      const submap = idx === 0 ? (1 << XenFeat.hvm_callback_vector) | (1 << XenFeat.hvm_safe_pvclock) : 0;
      v.setUint32(4, submap >>> 0, true);
      return env.mem.write(arg, info) ? 0n : err(Errno.EFAULT);
    }
    case XenVer.pagesize:
      return 4096n;
    case XenVer.guest_handle:
      // The toolstack's handle (UUID) for the domain: none was given.
      return put(new Uint8Array(16));
    case XenVer.commandline:
    case XenVer.build_id:
      // Xen's own command line and build id: only a privileged domain may read them.
      return err(Errno.EPERM);
    default:
      return err(Errno.ENOSYS);
  }
}

function consoleIo(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0]);
  if (cmd === ConsoleIo.read) return 0n;
  if (cmd !== ConsoleIo.write) return err(Errno.ENOSYS);
  const count = call.args[1]!;
  if (count > BigInt(CONSOLE_WRITE_MAX)) return err(Errno.EINVAL);
  const bytes = env.mem.read(call.args[2]!, Number(count));
  if (!bytes) return err(Errno.EFAULT);
  env.services.consoleWrite(bytes);
  return 0n;
}

function domidIsSelf(domid: number): boolean {
  return domid === DOMID_SELF || domid === 0;
}

const TOOLSTACK_PARAMS: ReadonlySet<number> = new Set([
  HvmParam.STORE_PFN,
  HvmParam.STORE_EVTCHN,
  HvmParam.CONSOLE_PFN,
  HvmParam.CONSOLE_EVTCHN,
]);

function hvmOp(env: HypercallEnv, call: HypercallCall): bigint {
  const op = Number(call.args[0]);
  const ptr = call.args[1]!;
  if (op === HvmOp.set_evtchn_upcall_vector) return setUpcallVector(env, ptr);
  if (op === HvmOp.pagetable_dying) return 0n;
  if (op !== HvmOp.set_param && op !== HvmOp.get_param) return err(Errno.ENOSYS);
  const raw = env.mem.read(ptr, 16);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  if (!domidIsSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
  const index = v.getUint32(4, true);
  if (index >= HVM_NR_PARAMS) return err(Errno.EINVAL);
  if (op === HvmOp.get_param) {
    v.setBigUint64(8, env.domain.hvmParams[index]!, true);
    return env.mem.write(ptr, raw) ? 0n : err(Errno.EFAULT);
  }
  // The platform's pages and ports are the toolstack's to set, as on Xen.
  if (TOOLSTACK_PARAMS.has(index)) return err(Errno.EPERM);
  const value = v.getBigUint64(8, true);
  if (index === HvmParam.CALLBACK_IRQ) {
    const type = Number(value >> 56n);
    // Vector type is the one HVM guests on KVM use; GSI 0 means "none".
    if (type === 2 && (value & 0xffn) < 0x10n) return err(Errno.EINVAL);
    if (type > 2) return err(Errno.EINVAL);
  }
  env.domain.hvmParams[index] = value;
  return 0n;
}

function setUpcallVector(env: HypercallEnv, ptr: bigint): bigint {
  const raw = env.mem.read(ptr, 8);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  const vcpu = v.getUint32(0, true);
  const vector = v.getUint8(4);
  if (vector < 0x10) return err(Errno.EINVAL);
  if (vcpu >= env.xen.nrVcpus) return err(Errno.ENOENT);
  env.xen.shared.setVcpu(vcpu, VcpuField.callbackVector, BigInt(vector));
  // An event that arrived before the vector existed is delivered now.
  if (env.xen.upcallPending(vcpu)) env.xen.raiseUpcall(vcpu);
  return 0n;
}

function memoryOp(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0] & 0xffffffffn);
  if (cmd !== XenMem.add_to_physmap) return memoryOpOther(env, call);
  const size = call.is64 ? 24 : 16;
  const raw = env.mem.read(call.args[1]!, size);
  if (!raw) return err(Errno.EFAULT);
  const v = new DataView(raw.buffer);
  if (!domidIsSelf(v.getUint16(0, true))) return err(Errno.ESRCH);
  const space = v.getUint32(4, true);
  const idx = call.is64 ? v.getBigUint64(8, true) : BigInt(v.getUint32(8, true));
  const gpfn = call.is64 ? v.getBigUint64(16, true) : BigInt(v.getUint32(12, true));
  if (space === XenMapSpace.grant_table) return mapGrantFrame(env, idx, gpfn);
  if (space !== XenMapSpace.shared_info) return err(Errno.EINVAL);
  if (idx !== 0n) return err(Errno.EINVAL);
  if (gpfn < 0x100n) return err(Errno.EINVAL);
  // Outside RAM the emulator's own page backs it (placeSharedInfoFrame).
  const inRam = env.mem.ram.layout.isRamFrame(gpfn);
  if (!placeSharedInfoFrame(env.xen, inRam ? null : gpfn)) return err(Errno.EINVAL);
  const gpa = Number(gpfn) * 4096;
  // shared_info lives in guest RAM at the chosen frame, so snapshots carry
  // it like any other page; the frame's previous contents are gone, as on Xen.
  env.mem.ram.fill(0, env.mem.ram.offsetOf(gpa, 4096), 4096);
  env.domain.sharedInfoGpa = BigInt(gpa);
  const x = env.xen;
  for (let v = 0; v < Math.min(x.nrVcpus, XEN_LEGACY_MAX_VCPUS); v++) {
    x.shared.setVcpu(v, VcpuField.vcpuInfoDefaultGpa, BigInt(gpa + v * VCPU_INFO_SIZE));
    publishVcpuTime(x, v);
  }
  publishWallclock(x);
  return 0n;
}

const reasonNames = Object.fromEntries(Object.entries(ShutdownReason).map(([k, v]) => [v, k])) as Record<
  number,
  ShutdownReasonName
>;

function schedOp(env: HypercallEnv, call: HypercallCall): bigint {
  const cmd = Number(call.args[0]);
  switch (cmd) {
    case SchedOp.yield:
      return 0n;
    case SchedOp.block:
      return env.services.block(call.vcpu);
    case SchedOp.poll: {
      // struct sched_poll { guest handle ports; u32 nr_ports; u64 timeout }:
      // 24 bytes for 64-bit callers; 16, packed, for compat ones (32-bit handle).
      const raw = env.mem.read(call.args[1]!, call.is64 ? 24 : 16);
      if (!raw) return err(Errno.EFAULT);
      const v = new DataView(raw.buffer);
      const nr = v.getUint32(call.is64 ? 8 : 4, true);
      if (nr > SCHEDOP_POLL_MAX_PORTS) return err(Errno.EINVAL);
      const list = env.mem.read(call.is64 ? v.getBigUint64(0, true) : BigInt(v.getUint32(0, true)), nr * 4);
      if (!list) return err(Errno.EFAULT);
      const ports = Array.from({ length: nr }, (_, i) => new DataView(list.buffer).getUint32(i * 4, true));
      if (ports.some((p) => p >= env.xen.nrPorts)) return err(Errno.EINVAL);
      return env.services.poll(call.vcpu, ports, v.getBigUint64(call.is64 ? 16 : 8, true));
    }
    case SchedOp.shutdown: {
      const raw = env.mem.read(call.args[1]!, 4);
      if (!raw) return err(Errno.EFAULT);
      const reason = reasonNames[new DataView(raw.buffer).getUint32(0, true)];
      if (reason === undefined) return err(Errno.EINVAL);
      env.services.shutdown(reason);
      return 0n;
    }
    default:
      return err(Errno.ENOSYS);
  }
}

// Every hypercall served: one entry each (docs/architecture.md "How to extend").  A subsystem's
// handlers live in its folder (evtchn/ops.ts, vcpu/ops.ts); those of a
// booting guest that belong to no subsystem are above.
const handlers: Partial<Record<number, Handler>> = {
  [Hypercall.xen_version]: xenVersion,
  [Hypercall.console_io]: consoleIo,
  [Hypercall.hvm_op]: hvmOp,
  [Hypercall.memory_op]: memoryOp,
  [Hypercall.sched_op]: schedOp,
  [Hypercall.event_channel_op]: eventChannelOp,
  [Hypercall.vcpu_op]: vcpuOp,
  [Hypercall.set_timer_op]: setTimerOp,
  [Hypercall.grant_table_op]: grantTableOp,
};

export function dispatchHypercall(env: HypercallEnv, call: HypercallCall): bigint {
  const handler = handlers[call.nr];
  call.restart = null;
  const result = handler ? runHandler(handler, env, call) : err(Errno.ENOSYS);
  if (result === ENOSYS) {
    // Named once per sub-op, whichever handler answered (names.ts).
    const { key, message } = unimplementedCall(call.nr, call.args[0]!);
    env.services.warnOnce(key, `${message}: answering -ENOSYS`);
  }
  return result;
}

const ENOSYS = err(Errno.ENOSYS);

function runHandler(handler: Handler, env: HypercallEnv, call: HypercallCall): bigint {
  try {
    return handler(env, call);
  } catch (e) {
    // A handler bug must not take the VMM down with the guest's help.
    env.services.warnOnce(
      `hypercall-crash-${call.nr}`,
      `hypercall ${hypercallName(call.nr)} handler failed: ${(e as Error).message}${process.env.XENKVM_DEBUG ? `\n${(e as Error).stack}` : ''}`,
    );
    return err(Errno.EINVAL);
  }
}
