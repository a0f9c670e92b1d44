// The kernel Xen transport (CONFIG_KVM_XEN): encodings of
// struct kvm_xen_vcpu_attr, struct kvm_xen_hvm_attr and struct
// kvm_xen_hvm_config, and the mapping between the `cpu/xen_vcpu` state and
// the kernel's per-vCPU Xen attributes.
//
// This host's KVM has no Xen support (KVM_CAP_XEN_HVM is 0), so xenkvm runs
// its userspace transport here; this module is what a distro kernel with
// KVM Xen would use instead.  Its encodings are checked byte for byte
// against <linux/kvm.h> by test/xen/kvm-xen.test.ts (gcc probe); its
// runtime test (test/xen/kvm-xen.kvm.test.ts) skips here with the reason.
//
// What the kernel keeps and what it does not: with KVM Xen the kernel owns
// the vcpu_info, vcpu_time_info and runstate registrations, the per-vCPU
// upcall vector and the single-shot timer bound to VIRQ_TIMER's port.  The
// default vcpu_info slot (in shared_info), the other VIRQ bindings and the
// periodic timer stay with the userspace emulator, so the get/put below take
// the emulator's part as input and only exchange the kernel's part.
import { ioctlBuf } from '../../kvm/libc.js';
import { offsetOf } from '../../kvm/layout.js';
import { Cap, KVM, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, KVM_XEN_VCPU_ATTR_TYPE } from '../../kvm/ioctls.js';
import { kvm_xen_hvm_attr, kvm_xen_hvm_config, kvm_xen_vcpu_attr } from '../../kvm/structs.js';
import type { Kvm } from '../../kvm/kvm.js';
import { INVALID_GPA, type XenVcpuState } from '../vcpu/state.js';

/** KVM_XEN_ATTR_TYPE_* of struct kvm_xen_hvm_attr (the ones xenkvm sets). */
export const KVM_XEN_ATTR_TYPE = { LONG_MODE: 0, SHARED_INFO: 1, UPCALL_VECTOR: 2 } as const;
/** KVM_XEN_HVM_CONFIG_* flags: also what KVM_CHECK_EXTENSION(KVM_CAP_XEN_HVM) reports. */
export const KVM_XEN_HVM_CONFIG = {
  HYPERCALL_MSR: 1 << 0,
  INTERCEPT_HCALL: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
  SHARED_INFO: 1 << 2,
  RUNSTATE: 1 << 3,
  EVTCHN_2LEVEL: 1 << 4,
  EVTCHN_SEND: 1 << 5,
} as const;
/**
 * The only event channel priority KVM implements: ((__u32)-1) in the header,
 * not 0.  KVM refuses any other value for a TIMER attribute with a port.
 */
export const KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL = 0xffffffff;
/** Xen's VIRQ_TIMER: the VIRQ the single-shot timer raises. */
export const VIRQ_TIMER = 0;
/** A GPA attribute holding this is unregistered (KVM_XEN_INVALID_GPA, all ones). */
export const KVM_XEN_INVALID_GPA = INVALID_GPA;

export type XenVcpuAttrType = keyof typeof KVM_XEN_VCPU_ATTR_TYPE;

/** The kvm_xen_vcpu_attr attributes xenkvm exchanges, by type. */
export type XenVcpuAttr =
  | { type: 'VCPU_INFO' | 'VCPU_TIME_INFO' | 'RUNSTATE_ADDR'; gpa: bigint }
  | { type: 'TIMER'; port: number; priority: number; expires_ns: bigint }
  | { type: 'UPCALL_VECTOR'; vector: number }
  | { type: 'VCPU_ID'; vcpu_id: number };

export type XenHvmAttr =
  | { type: 'LONG_MODE'; long_mode: boolean }
  | { type: 'SHARED_INFO'; gfn: bigint }
  | { type: 'UPCALL_VECTOR'; vector: number };

export interface XenHvmConfig {
  /** The MSR the guest writes to have the kernel fill its hypercall page. */
  msr: number;
  /** Hypercalls the kernel does not handle exit to userspace as KVM_EXIT_XEN. */
  interceptHcall: boolean;
}

const V = {
  type: offsetOf(kvm_xen_vcpu_attr, 'type'),
  gpa: offsetOf(kvm_xen_vcpu_attr, 'u.gpa'),
  vcpuId: offsetOf(kvm_xen_vcpu_attr, 'u.vcpu_id'),
  port: offsetOf(kvm_xen_vcpu_attr, 'u.timer.port'),
  priority: offsetOf(kvm_xen_vcpu_attr, 'u.timer.priority'),
  expires: offsetOf(kvm_xen_vcpu_attr, 'u.timer.expires_ns'),
  vector: offsetOf(kvm_xen_vcpu_attr, 'u.vector'),
} as const;
const H = {
  type: offsetOf(kvm_xen_hvm_attr, 'type'),
  longMode: offsetOf(kvm_xen_hvm_attr, 'u.long_mode'),
  gfn: offsetOf(kvm_xen_hvm_attr, 'u.shared_info.gfn'),
  vector: offsetOf(kvm_xen_hvm_attr, 'u.vector'),
} as const;
const C = { flags: offsetOf(kvm_xen_hvm_config, 'flags'), msr: offsetOf(kvm_xen_hvm_config, 'msr') } as const;

const VCPU_TYPE_NAMES = new Map(Object.entries(KVM_XEN_VCPU_ATTR_TYPE).map(([k, v]) => [v, k as XenVcpuAttrType]));
const HVM_TYPE_NAMES = new Map(
  Object.entries(KVM_XEN_ATTR_TYPE).map(([k, v]) => [v, k as keyof typeof KVM_XEN_ATTR_TYPE]),
);

const viewOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
function need(buf: Uint8Array, size: number, what: string): DataView {
  if (buf.length < size) throw new RangeError(`${what} needs ${size} bytes, got ${buf.length}`);
  return viewOf(buf);
}

/** Encodes `a` into `out` (zeroed first; default a new buffer) as struct kvm_xen_vcpu_attr. */
export function encodeXenVcpuAttr(
  a: XenVcpuAttr,
  out: Uint8Array = new Uint8Array(kvm_xen_vcpu_attr.size),
): Uint8Array {
  const v = need(out, kvm_xen_vcpu_attr.size, 'struct kvm_xen_vcpu_attr');
  out.fill(0, 0, kvm_xen_vcpu_attr.size);
  v.setUint16(V.type, KVM_XEN_VCPU_ATTR_TYPE[a.type], true);
  switch (a.type) {
    case 'VCPU_INFO':
    case 'VCPU_TIME_INFO':
    case 'RUNSTATE_ADDR':
      v.setBigUint64(V.gpa, a.gpa, true);
      break;
    case 'TIMER':
      v.setUint32(V.port, a.port, true);
      v.setUint32(V.priority, a.priority >>> 0, true);
      v.setBigUint64(V.expires, a.expires_ns, true);
      break;
    case 'UPCALL_VECTOR':
      v.setUint8(V.vector, a.vector);
      break;
    case 'VCPU_ID':
      v.setUint32(V.vcpuId, a.vcpu_id, true);
      break;
  }
  return out;
}

/** Decodes a struct kvm_xen_vcpu_attr of one of the types above; throws RangeError on any other. */
export function decodeXenVcpuAttr(buf: Uint8Array): XenVcpuAttr {
  const v = need(buf, kvm_xen_vcpu_attr.size, 'struct kvm_xen_vcpu_attr');
  const code = v.getUint16(V.type, true);
  const type = VCPU_TYPE_NAMES.get(code as never);
  switch (type) {
    case 'VCPU_INFO':
    case 'VCPU_TIME_INFO':
    case 'RUNSTATE_ADDR':
      return { type, gpa: v.getBigUint64(V.gpa, true) };
    case 'TIMER':
      return {
        type,
        port: v.getUint32(V.port, true),
        priority: v.getUint32(V.priority, true),
        expires_ns: v.getBigUint64(V.expires, true),
      };
    case 'UPCALL_VECTOR':
      return { type, vector: v.getUint8(V.vector) };
    case 'VCPU_ID':
      return { type, vcpu_id: v.getUint32(V.vcpuId, true) };
    default:
      throw new RangeError(`kvm_xen_vcpu_attr type ${code} is not one xenkvm decodes`);
  }
}

export function encodeXenHvmAttr(a: XenHvmAttr, out: Uint8Array = new Uint8Array(kvm_xen_hvm_attr.size)): Uint8Array {
  const v = need(out, kvm_xen_hvm_attr.size, 'struct kvm_xen_hvm_attr');
  out.fill(0, 0, kvm_xen_hvm_attr.size);
  v.setUint16(H.type, KVM_XEN_ATTR_TYPE[a.type], true);
  if (a.type === 'LONG_MODE') v.setUint8(H.longMode, a.long_mode ? 1 : 0);
  else if (a.type === 'SHARED_INFO') v.setBigUint64(H.gfn, a.gfn, true);
  else v.setUint8(H.vector, a.vector);
  return out;
}

export function decodeXenHvmAttr(buf: Uint8Array): XenHvmAttr {
  const v = need(buf, kvm_xen_hvm_attr.size, 'struct kvm_xen_hvm_attr');
  const code = v.getUint16(H.type, true);
  const type = HVM_TYPE_NAMES.get(code as never);
  if (type === 'LONG_MODE') return { type, long_mode: v.getUint8(H.longMode) !== 0 };
  if (type === 'SHARED_INFO') return { type, gfn: v.getBigUint64(H.gfn, true) };
  if (type === 'UPCALL_VECTOR') return { type, vector: v.getUint8(H.vector) };
  throw new RangeError(`kvm_xen_hvm_attr type ${code} is not one xenkvm decodes`);
}

/**
 * struct kvm_xen_hvm_config for the kernel transport: with INTERCEPT_HCALL
 * and no blobs, the kernel itself writes the hypercall page when the guest
 * writes `msr`, and hypercalls it does not handle exit as KVM_EXIT_XEN.
 */
export function encodeXenHvmConfig(
  c: XenHvmConfig,
  out: Uint8Array = new Uint8Array(kvm_xen_hvm_config.size),
): Uint8Array {
  const v = need(out, kvm_xen_hvm_config.size, 'struct kvm_xen_hvm_config');
  out.fill(0, 0, kvm_xen_hvm_config.size);
  v.setUint32(C.flags, c.interceptHcall ? KVM_XEN_HVM_CONFIG.INTERCEPT_HCALL : 0, true);
  v.setUint32(C.msr, c.msr >>> 0, true);
  return out;
}

/**
 * Why the kernel transport cannot be used on this host, or null.  The vCPU
 * attributes TIMER, VCPU_ID and UPCALL_VECTOR need EVTCHN_SEND (Linux 5.18+).
 */
export function kernelXenUnavailable(kvm: Kvm): string | null {
  const flags = kvm.check(Cap.XEN_HVM);
  if (flags === 0) return 'KVM_CAP_XEN_HVM is 0: this kernel was built without KVM Xen support (CONFIG_KVM_XEN)';
  const want = KVM_XEN_HVM_CONFIG.INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG.SHARED_INFO | KVM_XEN_HVM_CONFIG.EVTCHN_SEND;
  if ((flags & want) !== want)
    return `KVM_CAP_XEN_HVM is 0x${flags.toString(16)}: lacks INTERCEPT_HCALL, SHARED_INFO or EVTCHN_SEND (needs Linux 5.18+)`;
  return null;
}

/** Where the attribute ioctls go; the kernel by default.  Unit tests pass a fake kernel (this host has none). */
export interface XenAttrIo {
  vcpuGet(vcpuFd: number, attr: Uint8Array): void;
  vcpuSet(vcpuFd: number, attr: Uint8Array): void;
}

// Safety: `attr` is a kvm_xen_vcpu_attr-sized buffer (encodeXenVcpuAttr checks), used by the kernel only during the call.
export const kernelXenAttrIo: XenAttrIo = {
  vcpuGet: (fd, attr) => {
    ioctlBuf(fd, KVM.XEN_VCPU_GET_ATTR, attr, 'KVM_XEN_VCPU_GET_ATTR');
  },
  vcpuSet: (fd, attr) => {
    ioctlBuf(fd, KVM.XEN_VCPU_SET_ATTR, attr, 'KVM_XEN_VCPU_SET_ATTR');
  },
};

/** Reused for every attribute: calls are synchronous, so one buffer serves all vCPUs of a thread. */
const attrBuf = new Uint8Array(kvm_xen_vcpu_attr.size);

function getAttr(io: XenAttrIo, fd: number, type: XenVcpuAttrType): XenVcpuAttr {
  attrBuf.fill(0);
  new DataView(attrBuf.buffer).setUint16(V.type, KVM_XEN_VCPU_ATTR_TYPE[type], true);
  io.vcpuGet(fd, attrBuf);
  return decodeXenVcpuAttr(attrBuf);
}

function setAttr(io: XenAttrIo, fd: number, a: XenVcpuAttr): void {
  io.vcpuSet(fd, encodeXenVcpuAttr(a, attrBuf));
}

const gpaOf = (a: XenVcpuAttr): bigint => ('gpa' in a ? a.gpa : KVM_XEN_INVALID_GPA);

/**
 * The `cpu/xen_vcpu` state of a vCPU whose Xen state lives in the kernel:
 * the registrations, upcall vector and VIRQ_TIMER's timer from the kernel,
 * the rest (default vcpu_info GPA, other VIRQs, periodic timer) from
 * `emulated`, the userspace emulator's copy.
 */
export function kvmGetXenVcpuState(
  vcpuFd: number,
  emulated: XenVcpuState,
  io: XenAttrIo = kernelXenAttrIo,
): XenVcpuState {
  const info = gpaOf(getAttr(io, vcpuFd, 'VCPU_INFO'));
  const timer = getAttr(io, vcpuFd, 'TIMER');
  const vector = getAttr(io, vcpuFd, 'UPCALL_VECTOR');
  const xen_virq = emulated.xen_virq.slice();
  const port = timer.type === 'TIMER' ? timer.port : 0;
  xen_virq[VIRQ_TIMER] = port;
  return {
    ...emulated,
    // kvmPutXenVcpuState registers the default slot when the guest registered none: report that as none again.
    xen_vcpu_info_gpa:
      info === emulated.xen_vcpu_info_default_gpa && emulated.xen_vcpu_info_gpa === INVALID_GPA ? INVALID_GPA : info,
    xen_vcpu_time_info_gpa: gpaOf(getAttr(io, vcpuFd, 'VCPU_TIME_INFO')),
    xen_vcpu_runstate_gpa: gpaOf(getAttr(io, vcpuFd, 'RUNSTATE_ADDR')),
    xen_vcpu_callback_vector: vector.type === 'UPCALL_VECTOR' ? vector.vector : 0,
    xen_virq,
    xen_singleshot_timer_ns: port !== 0 && timer.type === 'TIMER' ? timer.expires_ns : 0n,
  };
}

/**
 * Writes the kernel's part of `state` into a vCPU (QEMU's order): the Xen
 * vCPU id first (the kernel indexes shared_info's vcpu_info array by it),
 * then vcpu_info (the explicit registration, else the default slot, so
 * upcalls have somewhere to go), time info, runstate area, the timer bound
 * to VIRQ_TIMER's port with 2-level priority (port 0 stops it), and the
 * upcall vector.  The emulator keeps the other VIRQs and the periodic timer.
 */
export function kvmPutXenVcpuState(
  vcpuFd: number,
  vcpuId: number,
  state: XenVcpuState,
  io: XenAttrIo = kernelXenAttrIo,
): void {
  setAttr(io, vcpuFd, { type: 'VCPU_ID', vcpu_id: vcpuId });
  const info = state.xen_vcpu_info_gpa !== INVALID_GPA ? state.xen_vcpu_info_gpa : state.xen_vcpu_info_default_gpa;
  setAttr(io, vcpuFd, { type: 'VCPU_INFO', gpa: info });
  setAttr(io, vcpuFd, { type: 'VCPU_TIME_INFO', gpa: state.xen_vcpu_time_info_gpa });
  setAttr(io, vcpuFd, { type: 'RUNSTATE_ADDR', gpa: state.xen_vcpu_runstate_gpa });
  const port = state.xen_virq[VIRQ_TIMER] ?? 0;
  setAttr(io, vcpuFd, {
    type: 'TIMER',
    port,
    priority: KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
    expires_ns: port !== 0 ? state.xen_singleshot_timer_ns : 0n,
  });
  setAttr(io, vcpuFd, { type: 'UPCALL_VECTOR', vector: state.xen_vcpu_callback_vector });
}

/** KVM_XEN_HVM_CONFIG on a VM (kernel transport).  Safety: a kvm_xen_hvm_config-sized buffer, used during the call only. */
export function kvmSetXenHvmConfig(vmFd: number, config: XenHvmConfig): void {
  ioctlBuf(vmFd, KVM.XEN_HVM_CONFIG, encodeXenHvmConfig(config), 'KVM_XEN_HVM_CONFIG');
}

/** KVM_XEN_HVM_SET_ATTR.  Safety: a kvm_xen_hvm_attr-sized buffer, used during the call only. */
export function kvmSetXenHvmAttr(vmFd: number, attr: XenHvmAttr): void {
  ioctlBuf(vmFd, KVM.XEN_HVM_SET_ATTR, encodeXenHvmAttr(attr), 'KVM_XEN_HVM_SET_ATTR');
}

/** KVM_XEN_HVM_GET_ATTR.  Safety: as kvmSetXenHvmAttr; the kernel fills the union for `type`. */
export function kvmGetXenHvmAttr(vmFd: number, type: XenHvmAttr['type']): XenHvmAttr {
  const buf = new Uint8Array(kvm_xen_hvm_attr.size);
  new DataView(buf.buffer).setUint16(H.type, KVM_XEN_ATTR_TYPE[type], true);
  ioctlBuf(vmFd, KVM.XEN_HVM_GET_ATTR, buf, 'KVM_XEN_HVM_GET_ATTR');
  return decodeXenHvmAttr(buf);
}
