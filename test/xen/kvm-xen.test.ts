// The kernel Xen transport's struct encodings, byte for byte against
// <linux/kvm.h>: a gcc-compiled probe fills each struct through its C member
// names and prints its bytes.  Then the cpu/xen_vcpu ⇄ attribute mapping,
// against a fake kernel: this host's KVM has no Xen support (KVM_CAP_XEN_HVM
// is 0), so the fake stands in for what cannot run here, following the
// kernel's documented semantics (TIMER port 0 stops the timer; a port needs
// 2-level priority).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
  KVM_XEN_ATTR_TYPE,
  KVM_XEN_HVM_CONFIG,
  decodeXenHvmAttr,
  decodeXenVcpuAttr,
  encodeXenHvmAttr,
  encodeXenHvmConfig,
  encodeXenVcpuAttr,
  kvmGetXenVcpuState,
  kvmPutXenVcpuState,
} from '../../src/xen/hypercall/kvm-xen.js';
import type { XenAttrIo, XenHvmAttr, XenVcpuAttr } from '../../src/xen/hypercall/kvm-xen.js';
import { KVM_XEN_VCPU_ATTR_TYPE } from '../../src/kvm/ioctls.js';
import { INVALID_GPA, initialXenVcpuState } from '../../src/xen/vcpu/state.js';
import type { XenVcpuState } from '../../src/xen/vcpu/state.js';
import { gccMissing, parseProbe, runC } from '../helpers/gcc-probe.js';

const missing = gccMissing(['linux/kvm.h']);
if (missing) console.log(`  skip xen-attr header probe: ${missing}`);

const VCPU_CASES: Array<[string, string, XenVcpuAttr]> = [
  [
    'vcpu_info',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO; a.u.gpa = 0x1fe040;',
    { type: 'VCPU_INFO', gpa: 0x1fe040n },
  ],
  [
    'time_info',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_VCPU_TIME_INFO; a.u.gpa = 0x1fe060;',
    { type: 'VCPU_TIME_INFO', gpa: 0x1fe060n },
  ],
  [
    'runstate',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR; a.u.gpa = ~0ULL;',
    { type: 'RUNSTATE_ADDR', gpa: INVALID_GPA },
  ],
  [
    'timer',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_TIMER; a.u.timer.port = 5; a.u.timer.priority = KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL; a.u.timer.expires_ns = 0x123456789abcdef0ULL;',
    { type: 'TIMER', port: 5, priority: KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, expires_ns: 0x123456789abcdef0n },
  ],
  [
    'vector',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR; a.u.vector = 0xf3;',
    { type: 'UPCALL_VECTOR', vector: 0xf3 },
  ],
  [
    'vcpu_id',
    'a.type = KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID; a.u.vcpu_id = 0x01020304;',
    { type: 'VCPU_ID', vcpu_id: 0x01020304 },
  ],
];
const HVM_CASES: Array<[string, string, XenHvmAttr]> = [
  ['long_mode', 'h.type = KVM_XEN_ATTR_TYPE_LONG_MODE; h.u.long_mode = 1;', { type: 'LONG_MODE', long_mode: true }],
  [
    'shared_info',
    'h.type = KVM_XEN_ATTR_TYPE_SHARED_INFO; h.u.shared_info.gfn = 0xfeff0;',
    { type: 'SHARED_INFO', gfn: 0xfeff0n },
  ],
  [
    'hvm_vector',
    'h.type = KVM_XEN_ATTR_TYPE_UPCALL_VECTOR; h.u.vector = 0xf3;',
    { type: 'UPCALL_VECTOR', vector: 0xf3 },
  ],
];

function probe(): Map<string, number[]> {
  const src = [
    '#include <stdio.h>',
    '#include <string.h>',
    '#include <linux/kvm.h>',
    'static void dump(const char *n, const void *p, size_t len) { const unsigned char *b = p; printf("%s", n); for (size_t i = 0; i < len; i++) printf(" %u", b[i]); printf("\\n"); }',
    'int main(void) {',
    'struct kvm_xen_vcpu_attr a; struct kvm_xen_hvm_attr h; struct kvm_xen_hvm_config c;',
    ...VCPU_CASES.map(([n, fill]) => `memset(&a, 0, sizeof a); ${fill} dump("${n}", &a, sizeof a);`),
    ...HVM_CASES.map(([n, fill]) => `memset(&h, 0, sizeof h); ${fill} dump("${n}", &h, sizeof h);`),
    'memset(&c, 0, sizeof c); c.flags = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL; c.msr = 0x40000000; dump("config", &c, sizeof c);',
    'printf("prio2 %u\\n", (unsigned)KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL);',
    ...Object.keys(KVM_XEN_VCPU_ATTR_TYPE).map((k) => `printf("vtype_${k} %d\\n", KVM_XEN_VCPU_ATTR_TYPE_${k});`),
    ...Object.keys(KVM_XEN_ATTR_TYPE).map((k) => `printf("htype_${k} %d\\n", KVM_XEN_ATTR_TYPE_${k});`),
    ...Object.keys(KVM_XEN_HVM_CONFIG).map((k) => `printf("flag_${k} %d\\n", KVM_XEN_HVM_CONFIG_${k});`),
    'return 0; }',
  ];
  return parseProbe(runC(src.join('\n')));
}

const cases = missing ? test.skip : test;

cases(
  "every kvm_xen_vcpu_attr, kvm_xen_hvm_attr and kvm_xen_hvm_config encoding matches the C compiler's bytes",
  () => {
    const got = probe();
    for (const [n, , attr] of VCPU_CASES)
      assert.equal(Array.from(encodeXenVcpuAttr(attr)), got.get(n), `vcpu attr ${n}`);
    for (const [n, , attr] of HVM_CASES) assert.equal(Array.from(encodeXenHvmAttr(attr)), got.get(n), `hvm attr ${n}`);
    assert.equal(
      Array.from(encodeXenHvmConfig({ msr: 0x40000000, interceptHcall: true })),
      got.get('config'),
      'hvm config',
    );
  },
);

cases('the constants match the header (2-level priority is (u32)-1, not 0)', () => {
  const got = probe();
  assert.is(KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, got.get('prio2')?.[0]);
  for (const [k, v] of Object.entries(KVM_XEN_VCPU_ATTR_TYPE)) assert.is(v, got.get(`vtype_${k}`)?.[0], k);
  for (const [k, v] of Object.entries(KVM_XEN_ATTR_TYPE)) assert.is(v, got.get(`htype_${k}`)?.[0], k);
  for (const [k, v] of Object.entries(KVM_XEN_HVM_CONFIG)) assert.is(v, got.get(`flag_${k}`)?.[0], k);
});

test('decode inverts encode for every attribute; unknown types are refused', () => {
  for (const [, , attr] of VCPU_CASES) assert.equal(decodeXenVcpuAttr(encodeXenVcpuAttr(attr)), attr);
  for (const [, , attr] of HVM_CASES) assert.equal(decodeXenHvmAttr(encodeXenHvmAttr(attr)), attr);
  const bad = encodeXenVcpuAttr({ type: 'VCPU_ID', vcpu_id: 0 });
  bad[0] = KVM_XEN_VCPU_ATTR_TYPE.RUNSTATE_DATA;
  assert.throws(() => decodeXenVcpuAttr(bad), /type 4 is not one xenkvm decodes/);
  assert.throws(() => encodeXenVcpuAttr({ type: 'VCPU_ID', vcpu_id: 1 }, new Uint8Array(8)), /needs 72 bytes/);
});

/** A fake of the kernel's per-vCPU Xen attribute store (see the header comment). */
function fakeKernel(): XenAttrIo & { attrs: Map<number, XenVcpuAttr>; sets: string[] } {
  const attrs = new Map<number, XenVcpuAttr>();
  const sets: string[] = [];
  return {
    attrs,
    sets,
    vcpuSet(_fd, buf) {
      const a = decodeXenVcpuAttr(buf);
      sets.push(a.type);
      if (a.type === 'TIMER' && a.port !== 0 && a.priority !== KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL)
        throw new Error('EINVAL');
      attrs.set(KVM_XEN_VCPU_ATTR_TYPE[a.type], a.type === 'TIMER' && a.port === 0 ? { ...a, expires_ns: 0n } : a);
    },
    vcpuGet(_fd, buf) {
      const type = decodeXenVcpuAttr(buf).type;
      const initial: XenVcpuAttr =
        type === 'TIMER'
          ? { type, port: 0, priority: 0, expires_ns: 0n }
          : type === 'UPCALL_VECTOR'
            ? { type, vector: 0 }
            : type === 'VCPU_ID'
              ? { type, vcpu_id: 0 }
              : { type, gpa: INVALID_GPA };
      encodeXenVcpuAttr(attrs.get(KVM_XEN_VCPU_ATTR_TYPE[type]) ?? initial, buf);
    },
  };
}

const registered = (): XenVcpuState => {
  const s = {
    ...initialXenVcpuState(),
    xen_vcpu_info_gpa: 0x1fe040n,
    xen_vcpu_info_default_gpa: 0xfeff0000n,
    xen_vcpu_time_info_gpa: 0x1fe060n,
    xen_vcpu_runstate_gpa: 0x1fe100n,
    xen_vcpu_callback_vector: 0xf3,
    xen_singleshot_timer_ns: 5_000_000_000n,
    xen_periodic_timer_period: 10_000_000n,
  };
  s.xen_virq[0] = 5;
  s.xen_virq[3] = 9; // VIRQ_DEBUG: stays with the emulator
  return s;
};

test('put then get through the kernel attributes gives the state back (fake kernel: no KVM Xen here)', () => {
  const k = fakeKernel();
  const s = registered();
  kvmPutXenVcpuState(7, 1, s, k);
  assert.equal(
    k.sets,
    ['VCPU_ID', 'VCPU_INFO', 'VCPU_TIME_INFO', 'RUNSTATE_ADDR', 'TIMER', 'UPCALL_VECTOR'],
    "QEMU's order, VCPU_ID first",
  );
  assert.equal(k.attrs.get(KVM_XEN_VCPU_ATTR_TYPE.TIMER), {
    type: 'TIMER',
    port: 5,
    priority: KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
    expires_ns: 5_000_000_000n,
  });
  assert.equal(k.attrs.get(KVM_XEN_VCPU_ATTR_TYPE.VCPU_ID), { type: 'VCPU_ID', vcpu_id: 1 });
  // The emulator's view lost the kernel-held fields: get restores them from the kernel.
  const emulated = {
    ...initialXenVcpuState(),
    xen_vcpu_info_default_gpa: s.xen_vcpu_info_default_gpa,
    xen_periodic_timer_period: s.xen_periodic_timer_period,
  };
  emulated.xen_virq[3] = 9;
  assert.equal(kvmGetXenVcpuState(7, emulated, k), s);
});

test('no explicit vcpu_info: the kernel gets the default slot, and get reports none again; no timer port stops the timer', () => {
  const k = fakeKernel();
  const s = { ...registered(), xen_vcpu_info_gpa: INVALID_GPA, xen_singleshot_timer_ns: 0n };
  s.xen_virq[0] = 0;
  kvmPutXenVcpuState(7, 0, s, k);
  assert.equal(k.attrs.get(KVM_XEN_VCPU_ATTR_TYPE.VCPU_INFO), { type: 'VCPU_INFO', gpa: 0xfeff0000n });
  assert.equal(k.attrs.get(KVM_XEN_VCPU_ATTR_TYPE.TIMER), {
    type: 'TIMER',
    port: 0,
    priority: KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
    expires_ns: 0n,
  });
  assert.equal(kvmGetXenVcpuState(7, s, k), s);
});

test.run();
