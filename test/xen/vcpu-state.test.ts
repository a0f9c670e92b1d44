import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { decode, encode } from '@msgpack/msgpack';
import {
  MSGPACK_OPTIONS,
  checkSchemas,
  decodeState,
  decodeWithSchema,
  encodeState,
  schemaOf,
} from '../../src/vmstate/index.js';
import type { SectionSchema } from '../../src/vmstate/index.js';
import { INVALID_GPA, NR_VIRQS, initialXenVcpuState, xenVcpuState } from '../../src/xen/vcpu/state.js';
import { XEN_VCPU_V1_PAYLOAD, XEN_VCPU_V1_SCHEMA } from '../helpers/paths.js';

const v1Bytes = readFileSync(XEN_VCPU_V1_PAYLOAD);
const v1Schema = JSON.parse(readFileSync(XEN_VCPU_V1_SCHEMA, 'utf8')) as SectionSchema;

test('the golden v1 payload loads into v2 with no VIRQ bound and no timer armed', () => {
  const s = decodeState(xenVcpuState, decode(v1Bytes, MSGPACK_OPTIONS));
  assert.is(s.xen_vcpu_info_gpa, 0x1fe040n);
  assert.is(s.xen_vcpu_info_default_gpa, 0xfeff0000n);
  assert.is(s.xen_vcpu_time_info_gpa, 0x1fe060n);
  assert.is(s.xen_vcpu_runstate_gpa, INVALID_GPA);
  assert.is(s.xen_vcpu_callback_vector, 0xf3);
  assert.equal(s.xen_virq, new Array(NR_VIRQS).fill(0));
  assert.is(s.xen_singleshot_timer_ns, 0n);
  assert.is(s.xen_periodic_timer_period, 0n);
});

test('the golden v1 payload decodes with its own embedded schema alone', () => {
  const g = decodeWithSchema(v1Schema, decode(v1Bytes, MSGPACK_OPTIONS));
  assert.equal(Object.keys(g), [
    'xen_vcpu_info_gpa',
    'xen_vcpu_info_default_gpa',
    'xen_vcpu_time_info_gpa',
    'xen_vcpu_runstate_gpa',
    'xen_vcpu_callback_vector',
  ]);
  assert.is(g.xen_vcpu_runstate_gpa, INVALID_GPA);
});

test('v2 still loads everything v1 wrote; v1 builds cannot read v2 files', () => {
  const breaks = checkSchemas(v1Schema, schemaOf(xenVcpuState));
  assert.equal(
    breaks.filter((b) => b.breaks === 'old-in-new'),
    [],
  );
  assert.equal(
    breaks.map((b) => b.breaks),
    ['new-in-old'],
  );
  assert.match(breaks[0]!.message, /version raised from 1 to 2/);
});

test('a v2 state with bound VIRQs and armed timers round-trips', () => {
  const s = {
    ...initialXenVcpuState(),
    xen_vcpu_callback_vector: 0xf3,
    xen_singleshot_timer_ns: 123_456_789_000n,
    xen_periodic_timer_period: 10_000_000n,
  };
  s.xen_virq[0] = 5; // VIRQ_TIMER bound to port 5
  const back = decodeState(
    xenVcpuState,
    decode(encode(encodeState(xenVcpuState, s), MSGPACK_OPTIONS), MSGPACK_OPTIONS),
  );
  assert.equal(back, s);
  assert.equal(initialXenVcpuState().xen_virq[0], 0); // the initial state is not shared
});

test('a v2 payload is refused by the v1 reader with both versions named', () => {
  const v2 = encodeState(xenVcpuState, initialXenVcpuState());
  assert.throws(() => decodeWithSchema(v1Schema, v2), /section cpu\/xen_vcpu: input version 2 is newer than 1/);
});

test.run();
