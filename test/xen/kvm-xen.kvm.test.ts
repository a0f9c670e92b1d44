// The kernel Xen transport at run time: put a cpu/xen_vcpu state into a vCPU
// through KVM_XEN_VCPU_SET_ATTR and read it back.  Needs a kernel with KVM
// Xen (KVM_CAP_XEN_HVM with SHARED_INFO and EVTCHN_SEND); this host's has
// none, so here it prints why and registers no test.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kvm, KvmVm, kvmUnavailable } from '../../src/kvm/kvm.js';
import {
  kernelXenUnavailable,
  kvmGetXenVcpuState,
  kvmPutXenVcpuState,
  kvmSetXenHvmAttr,
  kvmSetXenHvmConfig,
} from '../../src/xen/hypercall/kvm-xen.js';
import { closeFd } from '../../src/kvm/libc.js';
import { initialXenVcpuState } from '../../src/xen/vcpu/state.js';
import { XEN_HYPERCALL_MSR } from '../../src/xen/abi.js';

function whyNot(): string | null {
  const noKvm = kvmUnavailable();
  if (noKvm) return noKvm;
  const kvm = Kvm.open();
  try {
    return kernelXenUnavailable(kvm);
  } finally {
    kvm.close();
  }
}

const skip = whyNot();
if (skip) {
  console.log(`  skip state-xen-attr: ${skip}`);
} else {
  test('a Xen vCPU state put through KVM_XEN_VCPU_SET_ATTR reads back the same', () => {
    const kvm = Kvm.open();
    const vm = new KvmVm(kvm);
    let vcpu = -1;
    try {
      kvmSetXenHvmConfig(vm.fd, { msr: XEN_HYPERCALL_MSR, interceptHcall: true });
      kvmSetXenHvmAttr(vm.fd, { type: 'LONG_MODE', long_mode: true });
      kvmSetXenHvmAttr(vm.fd, { type: 'SHARED_INFO', gfn: 0xfeffn });
      vcpu = vm.createVcpu(0);
      const s = {
        ...initialXenVcpuState(),
        xen_vcpu_info_default_gpa: 0xfeff000n,
        xen_vcpu_info_gpa: 0x2000n,
        xen_vcpu_time_info_gpa: 0x2040n,
        xen_vcpu_callback_vector: 0xf3,
        xen_singleshot_timer_ns: 1n << 62n,
      };
      s.xen_virq[0] = 3;
      kvmPutXenVcpuState(vcpu, 0, s);
      assert.equal(
        kvmGetXenVcpuState(vcpu, { ...initialXenVcpuState(), xen_vcpu_info_default_gpa: s.xen_vcpu_info_default_gpa }),
        s,
      );
    } finally {
      if (vcpu >= 0) closeFd(vcpu);
      vm.destroy();
      kvm.close();
    }
  });
}

test.run();
