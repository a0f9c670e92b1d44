// One table of Xen's names for hypercalls and their sub-ops (numbers as in
// Xen's public headers), so that whatever the emulator does not serve is
// logged once under the name a reader can look up.  Naming only: a name here
// says nothing about whether the call is implemented.

/** `names[i]` is the name of number i; '' where Xen defines none. */
type NameList = readonly string[];

const HYPERCALLS: NameList = [
  'set_trap_table',
  'mmu_update',
  'set_gdt',
  'stack_switch',
  'set_callbacks',
  'fpu_taskswitch',
  'sched_op_compat',
  'platform_op',
  'set_debugreg',
  'get_debugreg',
  'update_descriptor',
  '',
  'memory_op',
  'multicall',
  'update_va_mapping',
  'set_timer_op',
  'event_channel_op_compat',
  'xen_version',
  'console_io',
  'physdev_op_compat',
  'grant_table_op',
  'vm_assist',
  'update_va_mapping_otherdomain',
  'iret',
  'vcpu_op',
  'set_segment_base',
  'mmuext_op',
  'xsm_op',
  'nmi_op',
  'sched_op',
  'callback_op',
  'xenoprof_op',
  'event_channel_op',
  'physdev_op',
  'hvm_op',
  'sysctl',
  'domctl',
  'kexec_op',
  'tmem_op',
  'argo_op',
  'xenpmu_op',
  'dm_op',
  'hypfs_op',
];

const prefixed = (prefix: string, names: NameList): NameList => names.map((n) => (n ? prefix + n : ''));

/** Sub-op names of the hypercalls whose first argument is a command number. */
const SUB_OPS: Readonly<Record<string, NameList>> = {
  memory_op: prefixed('XENMEM_', [
    'increase_reservation',
    'decrease_reservation',
    'maximum_ram_page',
    'current_reservation',
    'maximum_reservation',
    'machphys_mfn_list',
    'populate_physmap',
    'add_to_physmap',
    'translate_gpfn_list',
    'memory_map',
    'machine_memory_map',
    'exchange',
    'machphys_mapping',
    'set_memory_map',
    'maximum_gpfn',
    'remove_from_physmap',
    'set_pod_target',
    'get_pod_target',
    'get_sharing_freed_pages',
    'get_sharing_shared_pages',
    'paging_op',
    'access_op',
    'sharing_op',
    'add_to_physmap_batch',
    'claim_pages',
    'machphys_compat_mfn_list',
    'get_vnumainfo',
    'reserved_device_memory_map',
    'acquire_resource',
  ]),
  xen_version: prefixed('XENVER_', [
    'version',
    'extraversion',
    'compile_info',
    'capabilities',
    'changeset',
    'platform_parameters',
    'get_features',
    'pagesize',
    'guest_handle',
    'commandline',
    'build_id',
    'extraversion2',
    'capabilities2',
    'changeset2',
    'commandline2',
  ]),
  console_io: prefixed('CONSOLEIO_', ['write', 'read']),
  vm_assist: prefixed('VMASST_CMD_', ['enable', 'disable']),
  sched_op: prefixed('SCHEDOP_', [
    'yield',
    'block',
    'shutdown',
    'poll',
    'remote_shutdown',
    'shutdown_code',
    'watchdog',
    'pin_override',
  ]),
  vcpu_op: prefixed('VCPUOP_', [
    'initialise',
    'up',
    'down',
    'is_up',
    'get_runstate_info',
    'register_runstate_memory_area',
    'set_periodic_timer',
    'stop_periodic_timer',
    'set_singleshot_timer',
    'stop_singleshot_timer',
    'register_vcpu_info',
    'send_nmi',
    'get_physid',
    'register_vcpu_time_memory_area',
    'register_runstate_phys_area',
    'register_vcpu_time_phys_area',
  ]),
  grant_table_op: prefixed('GNTTABOP_', [
    'map_grant_ref',
    'unmap_grant_ref',
    'setup_table',
    'dump_table',
    'transfer',
    'copy',
    'query_size',
    'unmap_and_replace',
    'set_version',
    'get_status_frames',
    'get_version',
    'swap_grant_ref',
    'cache_flush',
  ]),
  event_channel_op: prefixed('EVTCHNOP_', [
    'bind_interdomain',
    'bind_virq',
    'bind_pirq',
    'close',
    'send',
    'status',
    'alloc_unbound',
    'bind_ipi',
    'bind_vcpu',
    'unmask',
    'reset',
    'init_control',
    'expand_array',
    'set_priority',
    'reset_cont',
  ]),
  physdev_op: prefixed('PHYSDEVOP_', [
    '',
    '',
    '',
    '',
    '',
    'irq_status_query',
    'set_iopl',
    'set_iobitmap',
    'apic_read',
    'apic_write',
    'alloc_irq_vector',
    'free_irq_vector',
    'eoi',
    'map_pirq',
    'unmap_pirq',
    'manage_pci_add',
    'manage_pci_remove',
    'pirq_eoi_gmfn_v1',
    '',
    'restore_msi',
    'manage_pci_add_ext',
    'setup_gsi',
    '',
    'get_free_pirq',
    'pci_mmcfg_reserved',
    'pci_device_add',
    'pci_device_remove',
    'restore_msi_ext',
    'pirq_eoi_gmfn_v2',
    'dbgp_op',
    'prepare_msix',
    'release_msix',
  ]),
  hvm_op: prefixed('HVMOP_', [
    'set_param',
    'get_param',
    'set_pci_intx_level',
    'set_isa_irq_level',
    'set_pci_link_route',
    'flush_tlbs',
    '',
    '',
    '',
    'pagetable_dying',
    'get_time',
    'xentrace',
    'set_mem_access',
    'get_mem_access',
    '',
    'get_mem_type',
    '',
    '',
    '',
    '',
    '',
    '',
    '',
    'set_evtchn_upcall_vector',
    'guest_request_vm_event',
    'altp2m',
  ]),
};

/** memory_op keeps a continuation's start extent above its command (MEMOP_EXTENT_SHIFT). */
const MEMOP_CMD_MASK = 0x3fn;

export function hypercallName(nr: number): string {
  return HYPERCALLS[nr] || `hypercall ${nr}`;
}

/**
 * The sub-op a call names, if its hypercall has sub-ops: its number, and
 * Xen's name for it ('' when Xen defines none).
 */
export function subOpOf(nr: number, arg0: bigint): { sub: number; name: string } | null {
  const table = SUB_OPS[HYPERCALLS[nr] ?? ''];
  if (!table) return null;
  const sub = Number(arg0 & (HYPERCALLS[nr] === 'memory_op' ? MEMOP_CMD_MASK : 0xffffffffn));
  return { sub, name: table[sub] ?? '' };
}

/**
 * What to log, once, for a call the emulator does not serve: a key that
 * stays within the table (every unnamed sub-op of one hypercall shares a
 * key, so a guest trying numbers at random adds one line, not one per try)
 * and the line itself.
 */
export function unimplementedCall(nr: number, arg0: bigint): { key: string; message: string } {
  const hc = hypercallName(nr);
  const op = subOpOf(nr, arg0);
  if (!op) return { key: `unimpl-${HYPERCALLS[nr] ? nr : 'other'}`, message: `guest called unimplemented ${hc}` };
  if (!op.name) return { key: `unimpl-${nr}-other`, message: `guest called ${hc} with unknown sub-op ${op.sub}` };
  return { key: `unimpl-${nr}-${op.sub}`, message: `guest called unimplemented ${hc} ${op.name} (${op.sub})` };
}
