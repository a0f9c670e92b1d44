// Xen guest ABI numbers used by the emulator, defined once (docs/xen-abi.md; Xen's
// public headers xen/include/public/{xen,version,event_channel,sched,
// hvm/hvm_op,hvm/params,memory}.h).

export const XEN_VERSION_MAJOR = 4;
export const XEN_VERSION_MINOR = 17;
export const XEN_EXTRAVERSION = '-xenkvm';

export const XEN_CPUID_BASE = 0x40000000;
/** "XenVMMXenVMM" as CPUID returns it in EBX, ECX, EDX. */
export const XEN_CPUID_SIGNATURE = [0x566e6558, 0x65584d4d, 0x4d4d566e] as const;
export const XEN_HYPERCALL_MSR = 0x40000000;
export const XEN_CPUID_VCPU_ID_PRESENT = 1 << 3;
export const XEN_CPUID_DOMID_PRESENT = 1 << 4;
export const XEN_HVM_CPUID_UPCALL_VECTOR = 1 << 6;

export const DOMID_SELF = 0x7ff0;

export const Hypercall = {
  memory_op: 12,
  multicall: 13,
  set_timer_op: 15,
  event_channel_op_compat: 16,
  xen_version: 17,
  console_io: 18,
  grant_table_op: 20,
  vm_assist: 21,
  vcpu_op: 24,
  sched_op_compat: 6,
  sched_op: 29,
  event_channel_op: 32,
  physdev_op: 33,
  hvm_op: 34,
  sysctl: 35,
  domctl: 36,
} as const;
/** Hypercall page: 128 stubs of 32 bytes. */
export const HYPERCALL_STUBS = 128;
export const HYPERCALL_STUB_SIZE = 32;

/** Positive errno values; hypercalls return them negated. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  ETIME: 62,
} as const;

export const XenVer = {
  version: 0,
  extraversion: 1,
  compile_info: 2,
  capabilities: 3,
  changeset: 4,
  platform_parameters: 5,
  get_features: 6,
  pagesize: 7,
  guest_handle: 8,
  commandline: 9,
  build_id: 10,
} as const;
/** XENFEAT_* bits answered in get_features submap 0. */
export const XenFeat = { hvm_callback_vector: 8, hvm_safe_pvclock: 9 } as const;

export const ConsoleIo = { write: 0, read: 1 } as const;
export const SchedOp = { yield: 0, block: 1, shutdown: 2, poll: 3 } as const;
export const ShutdownReason = { poweroff: 0, reboot: 1, suspend: 2, crash: 3, watchdog: 4, soft_reset: 5 } as const;
export type ShutdownReasonName = keyof typeof ShutdownReason;
export const HvmOp = { set_param: 0, get_param: 1, pagetable_dying: 9, set_evtchn_upcall_vector: 23 } as const;
export const HvmParam = {
  CALLBACK_IRQ: 0,
  STORE_PFN: 1,
  STORE_EVTCHN: 2,
  CONSOLE_PFN: 17,
  CONSOLE_EVTCHN: 18,
} as const;
/** HVM params this emulator keeps (others: -EINVAL). */
export const HVM_NR_PARAMS = 64;
export const XenMem = {
  increase_reservation: 0,
  decrease_reservation: 1,
  maximum_ram_page: 2,
  current_reservation: 3,
  maximum_reservation: 4,
  populate_physmap: 6,
  add_to_physmap: 7,
  memory_map: 9,
  exchange: 11,
  set_memory_map: 13,
  maximum_gpfn: 14,
} as const;
/** memory_op keeps a continuation's progress above the command: cmd = op | (start_extent << MEMOP_EXTENT_SHIFT). */
export const MEMOP_EXTENT_SHIFT = 6;
export const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;
/** xen_memory_reservation.mem_flags bits. */
export const XENMEMF_populate_on_demand = 1 << 16;

export const EvtchnOp = {
  bind_interdomain: 0,
  bind_virq: 1,
  bind_pirq: 2,
  close: 3,
  send: 4,
  status: 5,
  alloc_unbound: 6,
  bind_ipi: 7,
  bind_vcpu: 8,
  unmask: 9,
  reset: 10,
  init_control: 11,
} as const;
/** Xen's NR_VIRQS: per-vCPU virtual IRQ numbers. */
export const NR_VIRQS = 24;
export const Virq = { TIMER: 0, DEBUG: 1, CONSOLE: 2, XENOPROF: 7, XENPMU: 13 } as const;
/** VIRQs bound per vCPU; all others are global and bound on vCPU 0. */
export const PER_VCPU_VIRQS: ReadonlySet<number> = new Set([Virq.TIMER, Virq.DEBUG, Virq.XENOPROF, Virq.XENPMU]);

export const VcpuOp = {
  initialise: 0,
  up: 1,
  down: 2,
  is_up: 3,
  register_runstate_memory_area: 5,
  set_periodic_timer: 6,
  stop_periodic_timer: 7,
  set_singleshot_timer: 8,
  stop_singleshot_timer: 9,
  register_vcpu_info: 10,
  register_vcpu_time_memory_area: 13,
} as const;
export const VCPU_SSHOTTMR_future = 1;
/** Xen refuses periodic timers faster than this. */
export const MIN_PERIODIC_NS = 1_000_000n;
/** struct vcpu_hvm_context modes. */
export const VCPU_HVM_MODE_32B = 0;
export const VCPU_HVM_MODE_64B = 1;
export const HVM_CONTEXT_MODES: ReadonlySet<number> = new Set([VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B]);
/** MAX_POLL_PORTS of SCHEDOP_poll. */
export const SCHEDOP_POLL_MAX_PORTS = 128;

/** Guest layouts (docs/xen-abi.md, "Layouts"): 64-bit / compat. */
export const VCPU_INFO_SIZE = 64;
export const VcpuInfo = {
  upcallPending: 0,
  upcallMask: 1,
  pendingSel64: 8,
  pendingSel32: 4,
  time64: 32,
  time32: 16,
} as const;
export const SharedInfo = {
  pending64: 2048,
  mask64: 2560,
  wcVersion64: 3072,
  wcSec64: 3076,
  wcNsec64: 3080,
  wcSecHi64: 3084,
  pending32: 2048,
  mask32: 2176,
  wcVersion32: 2304,
  wcSec32: 2308,
  wcNsec32: 2312,
  wcSecHi32: 2340,
} as const;
export const TimeInfo = {
  version: 0,
  tscTimestamp: 8,
  systemTime: 16,
  mul: 24,
  shift: 28,
  flags: 29,
  size: 32,
} as const;
export const PVCLOCK_TSC_STABLE_BIT = 1;
/** Shared-info vcpu_info slots. */
export const XEN_LEGACY_MAX_VCPUS = 32;
export const XenMapSpace = { shared_info: 0, grant_table: 1 } as const;
/** XENMAPSPACE_grant_table idx flag asking for a v2 status frame. */
export const XENMAPIDX_grant_table_status = 0x80000000;

/** GNTTABOP_* (xen/include/public/grant_table.h). */
export const GnttabOp = {
  map_grant_ref: 0,
  unmap_grant_ref: 1,
  setup_table: 2,
  dump_table: 3,
  transfer: 4,
  copy: 5,
  query_size: 6,
  unmap_and_replace: 7,
  set_version: 8,
  get_status_frames: 9,
  get_version: 10,
  swap_grant_ref: 11,
  cache_flush: 12,
} as const;
/** Grant operation status codes (GNTST_*), as the op structures carry them. */
export const Gntst = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;
/** grant_entry_v1.flags bits. */
export const Gtf = {
  invalid: 0,
  permit_access: 1,
  accept_transfer: 2,
  transitive: 3,
  type_mask: 3,
  readonly: 1 << 2,
  reading: 1 << 3,
  writing: 1 << 4,
  sub_page: 1 << 8,
} as const;
/** Entries Xen keeps for the toolstack at the start of the table (console, xenstore). */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED_CONSOLE = 0;
export const GNTTAB_RESERVED_XENSTORE = 1;

/** Xen's PV ELF note carrying the 32-bit PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
export const HVM_START_MAGIC = 0x336ec578;
export const E820 = { ram: 1, reserved: 2 } as const;
