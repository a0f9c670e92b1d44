// Writes the golden vmstate payloads in fixtures/vmstate/.  Run once, when a
// format version is released, and commit the output; never regenerate an
// existing file (it stands for what an old build wrote):
//
//   npx tsc -p tsconfig.json && node dist/tools/gen-vmstate-fixtures.js
//
// cpu-xen_vcpu-v1.msgpack: one `cpu/xen_vcpu` envelope as version 1 wrote it,
// encoded with the v1 descriptor below (kept here as the historical record:
// GPAs and the callback vector, no VIRQs or timers), plus its schema in
// cpu-xen_vcpu-v1.schema.json.

import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode } from '@msgpack/msgpack';
import { MSGPACK_OPTIONS, defineState, encodeState, schemaOf, u64, u8 } from '../src/vmstate/index.js';

/** `cpu/xen_vcpu` as released at version 1.  Frozen: do not edit. */
export const xenVcpuStateV1 = defineState({
  name: 'cpu/xen_vcpu',
  version: 1,
  fields: {
    xen_vcpu_info_gpa: u64(),
    xen_vcpu_info_default_gpa: u64(),
    xen_vcpu_time_info_gpa: u64(),
    xen_vcpu_runstate_gpa: u64(),
    xen_vcpu_callback_vector: u8(),
  },
});

/** What the v1 fixture holds: vcpu_info placed by the guest, runstate never registered. */
export const XEN_VCPU_V1_SAMPLE = {
  xen_vcpu_info_gpa: 0x1fe040n,
  xen_vcpu_info_default_gpa: 0xfeff0000n,
  xen_vcpu_time_info_gpa: 0x1fe060n,
  xen_vcpu_runstate_gpa: 0xffffffffffffffffn,
  xen_vcpu_callback_vector: 0xf3,
};

function main(): void {
  const dir = join(fileURLToPath(new URL('../..', import.meta.url)), 'fixtures', 'vmstate');
  mkdirSync(dir, { recursive: true });
  const bytes = encode(encodeState(xenVcpuStateV1, XEN_VCPU_V1_SAMPLE), MSGPACK_OPTIONS);
  writeFileSync(join(dir, 'cpu-xen_vcpu-v1.msgpack'), bytes);
  writeFileSync(join(dir, 'cpu-xen_vcpu-v1.schema.json'), JSON.stringify(schemaOf(xenVcpuStateV1), null, 2) + '\n');
  console.log(`wrote ${bytes.length} bytes to ${dir}/cpu-xen_vcpu-v1.msgpack`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
