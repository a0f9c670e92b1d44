// Every KVM struct xenkvm passes to the kernel, as it is in
// <linux/kvm.h> and <asm/kvm.h> (x86-64).  test/kvm/layouts.test.ts
// compiles an offsetof/sizeof probe against those headers for each of them.
import { struct, union, type FieldSpec, type Layout } from './layout.js';

const u64s = (...names: string[]): FieldSpec[] => names.map((n) => [n, 'u64'] as const);

export const kvm_regs = struct(
  'struct kvm_regs',
  u64s(
    'rax',
    'rbx',
    'rcx',
    'rdx',
    'rsi',
    'rdi',
    'rsp',
    'rbp',
    'r8',
    'r9',
    'r10',
    'r11',
    'r12',
    'r13',
    'r14',
    'r15',
    'rip',
    'rflags',
  ),
);

export const kvm_segment = struct('struct kvm_segment', [
  ['base', 'u64'],
  ['limit', 'u32'],
  ['selector', 'u16'],
  ['type', 'u8'],
  ['present', 'u8'],
  ['dpl', 'u8'],
  ['db', 'u8'],
  ['s', 'u8'],
  ['l', 'u8'],
  ['g', 'u8'],
  ['avl', 'u8'],
  ['unusable', 'u8'],
  ['padding', 'u8'],
]);

export const kvm_dtable = struct('struct kvm_dtable', [
  ['base', 'u64'],
  ['limit', 'u16'],
  ['padding', 'u16', 3],
]);

export const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export const CONTROL_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;

export const kvm_sregs = struct('struct kvm_sregs', [
  ...SEGMENT_NAMES.map((n) => [n, kvm_segment] as const),
  ['gdt', kvm_dtable],
  ['idt', kvm_dtable],
  ...u64s(...CONTROL_NAMES),
  ['interrupt_bitmap', 'u64', 4],
]);

export const kvm_vcpu_events = struct('struct kvm_vcpu_events', [
  [
    'exception',
    struct('', [
      ['injected', 'u8'],
      ['nr', 'u8'],
      ['has_error_code', 'u8'],
      ['pending', 'u8'],
      ['error_code', 'u32'],
    ]),
  ],
  [
    'interrupt',
    struct('', [
      ['injected', 'u8'],
      ['nr', 'u8'],
      ['soft', 'u8'],
      ['shadow', 'u8'],
    ]),
  ],
  [
    'nmi',
    struct('', [
      ['injected', 'u8'],
      ['pending', 'u8'],
      ['masked', 'u8'],
      ['pad', 'u8'],
    ]),
  ],
  ['sipi_vector', 'u32'],
  ['flags', 'u32'],
  [
    'smi',
    struct('', [
      ['smm', 'u8'],
      ['pending', 'u8'],
      ['smm_inside_nmi', 'u8'],
      ['latched_init', 'u8'],
    ]),
  ],
  ['triple_fault', struct('', [['pending', 'u8']])],
  ['reserved', 'u8', 26],
  ['exception_has_payload', 'u8'],
  ['exception_payload', 'u64'],
]);

export const kvm_sync_regs = struct('struct kvm_sync_regs', [
  ['regs', kvm_regs],
  ['sregs', kvm_sregs],
  ['events', kvm_vcpu_events],
]);

const exitUnion = union('', [
  ['hw', struct('', [['hardware_exit_reason', 'u64']])],
  [
    'fail_entry',
    struct('', [
      ['hardware_entry_failure_reason', 'u64'],
      ['cpu', 'u32'],
    ]),
  ],
  [
    'io',
    struct('', [
      ['direction', 'u8'],
      ['size', 'u8'],
      ['port', 'u16'],
      ['count', 'u32'],
      ['data_offset', 'u64'],
    ]),
  ],
  [
    'mmio',
    struct('', [
      ['phys_addr', 'u64'],
      ['data', 'u8', 8],
      ['len', 'u32'],
      ['is_write', 'u8'],
    ]),
  ],
  [
    'internal',
    struct('', [
      ['suberror', 'u32'],
      ['ndata', 'u32'],
      ['data', 'u64', 16],
    ]),
  ],
  [
    'system_event',
    struct('', [
      ['type', 'u32'],
      ['ndata', 'u32'],
      ['data', 'u64', 16],
    ]),
  ],
  [
    'msr',
    struct('', [
      ['error', 'u8'],
      ['pad', 'u8', 7],
      ['reason', 'u32'],
      ['index', 'u32'],
      ['data', 'u64'],
    ]),
  ],
  [
    'xen',
    struct('', [
      ['type', 'u32'],
      [
        'u',
        struct('', [
          [
            'hcall',
            struct('', [
              ['longmode', 'u32'],
              ['cpl', 'u32'],
              ['input', 'u64'],
              ['result', 'u64'],
              ['params', 'u64', 6],
            ]),
          ],
        ]),
      ],
    ]),
  ],
  ['padding', 'u8', 256],
]);

export const kvm_run = struct('struct kvm_run', [
  ['request_interrupt_window', 'u8'],
  ['immediate_exit', 'u8'],
  ['padding1', 'u8', 6],
  ['exit_reason', 'u32'],
  ['ready_for_interrupt_injection', 'u8'],
  ['if_flag', 'u8'],
  ['flags', 'u16'],
  ['cr8', 'u64'],
  ['apic_base', 'u64'],
  ['exit', exitUnion, 0, { anonymous: true }],
  ['kvm_valid_regs', 'u64'],
  ['kvm_dirty_regs', 'u64'],
  [
    's',
    union('', [
      ['regs', kvm_sync_regs],
      ['padding', 'u8', 2048],
    ]),
  ],
]);

export const kvm_userspace_memory_region = struct('struct kvm_userspace_memory_region', [
  ['slot', 'u32'],
  ['flags', 'u32'],
  ['guest_phys_addr', 'u64'],
  ['memory_size', 'u64'],
  ['userspace_addr', 'u64'],
]);

export const kvm_cpuid_entry2 = struct('struct kvm_cpuid_entry2', [
  ['function', 'u32'],
  ['index', 'u32'],
  ['flags', 'u32'],
  ['eax', 'u32'],
  ['ebx', 'u32'],
  ['ecx', 'u32'],
  ['edx', 'u32'],
  ['padding', 'u32', 3],
]);
/** Header of struct kvm_cpuid2; `entries` follow at its size. */
export const kvm_cpuid2 = struct('struct kvm_cpuid2', [
  ['nent', 'u32'],
  ['padding', 'u32'],
]);

export const kvm_msr_filter_range = struct('struct kvm_msr_filter_range', [
  ['flags', 'u32'],
  ['nmsrs', 'u32'],
  ['base', 'u32'],
  ['bitmap', 'u64'],
]);
export const KVM_MSR_FILTER_MAX_RANGES = 16;
export const kvm_msr_filter = struct('struct kvm_msr_filter', [
  ['flags', 'u32'],
  ['ranges', kvm_msr_filter_range, KVM_MSR_FILTER_MAX_RANGES],
]);

export const kvm_enable_cap = struct('struct kvm_enable_cap', [
  ['cap', 'u32'],
  ['flags', 'u32'],
  ['args', 'u64', 4],
  ['pad', 'u8', 64],
]);

export const kvm_msi = struct('struct kvm_msi', [
  ['address_lo', 'u32'],
  ['address_hi', 'u32'],
  ['data', 'u32'],
  ['flags', 'u32'],
  ['devid', 'u32'],
  ['pad', 'u8', 12],
]);

export const kvm_mp_state = struct('struct kvm_mp_state', [['mp_state', 'u32']]);

export const kvm_msr_entry = struct('struct kvm_msr_entry', [
  ['index', 'u32'],
  ['reserved', 'u32'],
  ['data', 'u64'],
]);
/** Header of struct kvm_msrs; `entries` follow. */
export const kvm_msrs = struct('struct kvm_msrs', [
  ['nmsrs', 'u32'],
  ['pad', 'u32'],
]);
/** Header of struct kvm_msr_list; u32 `indices` follow. */
export const kvm_msr_list = struct('struct kvm_msr_list', [['nmsrs', 'u32']]);

export const kvm_fpu = struct('struct kvm_fpu', [
  ['fpr', 'u8', 128],
  ['fcw', 'u16'],
  ['fsw', 'u16'],
  ['ftwx', 'u8'],
  ['pad1', 'u8'],
  ['last_opcode', 'u16'],
  ['last_ip', 'u64'],
  ['last_dp', 'u64'],
  ['xmm', 'u8', 256],
  ['mxcsr', 'u32'],
  ['pad2', 'u32'],
]);
/** struct kvm_xsave without its flexible tail; KVM_GET_XSAVE2 may use more (KVM_CAP_XSAVE2). */
export const kvm_xsave = struct('struct kvm_xsave', [['region', 'u32', 1024]]);
export const KVM_MAX_XCRS = 16;
export const kvm_xcr = struct('struct kvm_xcr', [
  ['xcr', 'u32'],
  ['reserved', 'u32'],
  ['value', 'u64'],
]);
export const kvm_xcrs = struct('struct kvm_xcrs', [
  ['nr_xcrs', 'u32'],
  ['flags', 'u32'],
  ['xcrs', kvm_xcr, KVM_MAX_XCRS],
  ['padding', 'u64', 16],
]);
export const kvm_debugregs = struct('struct kvm_debugregs', [
  ['db', 'u64', 4],
  ['dr6', 'u64'],
  ['dr7', 'u64'],
  ['flags', 'u64'],
  ['reserved', 'u64', 9],
]);
export const kvm_lapic_state = struct('struct kvm_lapic_state', [['regs', 'u8', 1024]]);

export const kvm_clock_data = struct('struct kvm_clock_data', [
  ['clock', 'u64'],
  ['flags', 'u32'],
  ['pad0', 'u32'],
  ['realtime', 'u64'],
  ['host_tsc', 'u64'],
  ['pad', 'u32', 4],
]);

export const kvm_pic_state = struct(
  'struct kvm_pic_state',
  [
    'last_irr',
    'irr',
    'imr',
    'isr',
    'priority_add',
    'irq_base',
    'read_reg_select',
    'poll',
    'special_mask',
    'init_state',
    'auto_eoi',
    'rotate_on_auto_eoi',
    'special_fully_nested_mode',
    'init4',
    'elcr',
    'elcr_mask',
  ].map((n) => [n, 'u8'] as const),
);
export const KVM_IOAPIC_NUM_PINS = 24;
export const kvm_ioapic_state = struct('struct kvm_ioapic_state', [
  ['base_address', 'u64'],
  ['ioregsel', 'u32'],
  ['id', 'u32'],
  ['irr', 'u32'],
  ['pad', 'u32'],
  ['redirtbl', 'u64', KVM_IOAPIC_NUM_PINS],
]);
export const kvm_irqchip = struct('struct kvm_irqchip', [
  ['chip_id', 'u32'],
  ['pad', 'u32'],
  [
    'chip',
    union('', [
      ['dummy', 'u8', 512],
      ['pic', kvm_pic_state],
      ['ioapic', kvm_ioapic_state],
    ]),
  ],
]);

export const kvm_pit_channel_state = struct('struct kvm_pit_channel_state', [
  ['count', 'u32'],
  ['latched_count', 'u16'],
  ...[
    'count_latched',
    'status_latched',
    'status',
    'read_state',
    'write_state',
    'write_latch',
    'rw_mode',
    'mode',
    'bcd',
    'gate',
  ].map((n) => [n, 'u8'] as const),
  ['count_load_time', 'i64'],
]);
export const kvm_pit_state2 = struct('struct kvm_pit_state2', [
  ['channels', kvm_pit_channel_state, 3],
  ['flags', 'u32'],
  ['reserved', 'u32', 9],
]);
export const kvm_pit_config = struct('struct kvm_pit_config', [
  ['flags', 'u32'],
  ['pad', 'u32', 15],
]);

export const kvm_dirty_log = struct('struct kvm_dirty_log', [
  ['slot', 'u32'],
  ['padding1', 'u32'],
  ['dirty_bitmap', 'u64'],
]);
export const kvm_clear_dirty_log = struct('struct kvm_clear_dirty_log', [
  ['slot', 'u32'],
  ['num_pages', 'u32'],
  ['first_page', 'u64'],
  ['dirty_bitmap', 'u64'],
]);

// The kernel Xen transport (CONFIG_KVM_XEN): not available on this host, but
// written and layout-checked so distro kernels with it can use it.
export const kvm_xen_hvm_config = struct('struct kvm_xen_hvm_config', [
  ['flags', 'u32'],
  ['msr', 'u32'],
  ['blob_addr_32', 'u64'],
  ['blob_addr_64', 'u64'],
  ['blob_size_32', 'u8'],
  ['blob_size_64', 'u8'],
  ['pad2', 'u8', 30],
]);
export const kvm_xen_vcpu_attr = struct('struct kvm_xen_vcpu_attr', [
  ['type', 'u16'],
  ['pad', 'u16', 3],
  [
    'u',
    union('', [
      ['gpa', 'u64'],
      ['pad', 'u64', 8],
      [
        'runstate',
        struct('', u64s('state', 'state_entry_time', 'time_running', 'time_runnable', 'time_blocked', 'time_offline')),
      ],
      ['vcpu_id', 'u32'],
      [
        'timer',
        struct('', [
          ['port', 'u32'],
          ['priority', 'u32'],
          ['expires_ns', 'u64'],
        ]),
      ],
      ['vector', 'u8'],
    ]),
  ],
]);
export const kvm_xen_hvm_attr = struct('struct kvm_xen_hvm_attr', [
  ['type', 'u16'],
  ['pad', 'u16', 3],
  [
    'u',
    union('', [
      ['long_mode', 'u8'],
      ['vector', 'u8'],
      ['shared_info', struct('', [['gfn', 'u64']])],
      ['xen_version', 'u32'],
      ['pad', 'u64', 8],
    ]),
  ],
]);

export const kvm_device_attr = struct('struct kvm_device_attr', [
  ['flags', 'u32'],
  ['group', 'u32'],
  ['attr', 'u64'],
  ['addr', 'u64'],
]);

/** Layouts the header probe checks, by C type. */
export const ALL_LAYOUTS: readonly Layout[] = [
  kvm_regs,
  kvm_segment,
  kvm_dtable,
  kvm_sregs,
  kvm_vcpu_events,
  kvm_sync_regs,
  kvm_run,
  kvm_userspace_memory_region,
  kvm_cpuid_entry2,
  kvm_cpuid2,
  kvm_msr_filter_range,
  kvm_msr_filter,
  kvm_enable_cap,
  kvm_msi,
  kvm_mp_state,
  kvm_msr_entry,
  kvm_msrs,
  kvm_msr_list,
  kvm_fpu,
  kvm_xsave,
  kvm_xcr,
  kvm_xcrs,
  kvm_debugregs,
  kvm_lapic_state,
  kvm_clock_data,
  kvm_pic_state,
  kvm_ioapic_state,
  kvm_irqchip,
  kvm_pit_channel_state,
  kvm_pit_state2,
  kvm_pit_config,
  kvm_dirty_log,
  kvm_clear_dirty_log,
  kvm_xen_hvm_config,
  kvm_xen_vcpu_attr,
  kvm_xen_hvm_attr,
  kvm_device_attr,
];
