// Every KVM struct layout, ioctl number and constant in src/kvm is compared
// with <linux/kvm.h> through a gcc-compiled offsetof/sizeof probe.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { leaves } from '../../src/kvm/layout.js';
import { ALL_LAYOUTS } from '../../src/kvm/structs.js';
import {
  Cap,
  Exit,
  KVM,
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MSR_EXIT_REASON_FILTER,
} from '../../src/kvm/ioctls.js';

/** Flag constants checked by name against the header. */
const FLAGS: Record<string, number> = {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MSR_EXIT_REASON_FILTER,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_DIRTY_LOG_INITIALLY_SET,
};
import { gccMissing, parseProbe, runC } from '../helpers/gcc-probe.js';

const missing = gccMissing(['linux/kvm.h']);
if (missing) console.log(`  skip kvm-layouts: ${missing}`);

const probeSource = (): string => {
  const lines: string[] = ['#include <stddef.h>', '#include <stdio.h>', '#include <linux/kvm.h>', 'int main(void) {'];
  for (const l of ALL_LAYOUTS) {
    lines.push(`printf("%s %zu\\n", "${l.cType.replace(' ', '_')}", sizeof(${l.cType}));`);
    for (const [ours, cPath] of leaves(l)) {
      lines.push(
        `printf("%s %zu %zu\\n", "${l.cType.replace(' ', '_')}.${ours}", offsetof(${l.cType}, ${cPath}), sizeof(((${l.cType} *)0)->${cPath}));`,
      );
    }
  }
  for (const name of Object.keys(KVM)) lines.push(`printf("ioctl_${name} %lu\\n", (unsigned long)KVM_${name});`);
  for (const name of Object.keys(Cap)) lines.push(`printf("cap_${name} %d\\n", KVM_CAP_${name});`);
  for (const name of Object.keys(Exit)) lines.push(`printf("exit_${name} %d\\n", KVM_EXIT_${name});`);
  for (const name of Object.keys(FLAGS)) lines.push(`printf("flag_${name} %d\\n", ${name});`);
  lines.push('return 0; }');
  return lines.join('\n');
};

(missing ? test.skip : test)('every struct size and member offset matches <linux/kvm.h>', () => {
  const got = parseProbe(runC(probeSource()));
  let checked = 0;
  for (const l of ALL_LAYOUTS) {
    const key = l.cType.replace(' ', '_');
    assert.equal(l.size, got.get(key)?.[0], `sizeof(${l.cType})`);
    for (const [ours, , offset, size] of leaves(l)) {
      const [cOff, cSize] = got.get(`${key}.${ours}`) ?? [];
      assert.equal(offset, cOff, `offsetof(${l.cType}, ${ours})`);
      assert.equal(size, cSize, `sizeof(${l.cType}.${ours})`);
      checked++;
    }
  }
  assert.ok(checked > 200, `checked ${checked} members`);
});

(missing ? test.skip : test)('every ioctl number, capability and exit reason matches the header', () => {
  const got = parseProbe(runC(probeSource()));
  for (const [name, value] of Object.entries(KVM)) assert.equal(value, got.get(`ioctl_${name}`)?.[0], `KVM_${name}`);
  for (const [name, value] of Object.entries(Cap)) assert.equal(value, got.get(`cap_${name}`)?.[0], `KVM_CAP_${name}`);
  for (const [name, value] of Object.entries(Exit))
    assert.equal(value, got.get(`exit_${name}`)?.[0], `KVM_EXIT_${name}`);
  for (const [name, value] of Object.entries(FLAGS)) assert.equal(value, got.get(`flag_${name}`)?.[0], name);
});

test.run();
