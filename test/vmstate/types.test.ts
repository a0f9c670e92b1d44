// Type-level tests: StateOf must follow the descriptor; tsc fails the build if
// an assertion below stops holding, and the runtime checks keep uvu honest.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  array,
  bool,
  bytes,
  defineState,
  enumOf,
  struct,
  u16,
  u32,
  u64,
  u8,
  i64,
  varArray,
} from '../../src/vmstate/index.js';
import type { StateOf } from '../../src/vmstate/index.js';
import { xenVcpuState } from '../../src/xen/vcpu/state.js';
import type { XenVcpuState } from '../../src/xen/vcpu/state.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T extends true>(_: T): void => {};

const child = defineState({ name: 'dev/extra', version: 1, fields: { n: u8() } });
const dev = defineState({
  name: 'dev',
  version: 2,
  minVersion: 1,
  fields: {
    a: u8(),
    big: i64(),
    flag: bool(),
    raw: bytes(4),
    mode: enumOf(u8, { off: 0, on: 1 }),
    list: array(u16(), 3),
    count: u32(),
    items: varArray(struct({ index: u32(), data: u64() }), { lengthField: 'count', max: 8 }),
    late: u64({ since: 2, default: 0n }),
  },
  subsections: { extra: { state: child, optional: true } },
});
type Dev = StateOf<typeof dev>;

expectType<Equal<Dev['a'], number>>(true);
expectType<Equal<Dev['big'], bigint>>(true);
expectType<Equal<Dev['mode'], 0 | 1>>(true);
expectType<Equal<Dev['items'], { index: number; data: bigint }[]>>(true);
expectType<Equal<Dev['extra'], { n: number } | undefined>>(true);
expectType<Equal<XenVcpuState['xen_virq'], number[]>>(true);

test('a state literal of the inferred type compiles and round-trips its shape', () => {
  const ok: Dev = {
    a: 1,
    big: -5n,
    flag: true,
    raw: new Uint8Array(4),
    mode: 1,
    list: [1, 2, 3],
    count: 1,
    items: [{ index: 0x10, data: 2n }],
    late: 0n,
  };
  // @ts-expect-error a u64 field is a bigint, not a number
  const bad: Dev = { ...ok, late: 0 };
  // @ts-expect-error 2 is not a value of the enum
  const badEnum: Dev = { ...ok, mode: 2 };
  assert.is(typeof bad.late, 'number');
  assert.is(badEnum.mode, 2);
  assert.is(ok.items[0]!.data, 2n);
});

test('StateOf of the Xen vCPU descriptor has every field of the issue', () => {
  const keys: (keyof XenVcpuState)[] = [
    'xen_vcpu_info_gpa',
    'xen_vcpu_info_default_gpa',
    'xen_vcpu_time_info_gpa',
    'xen_vcpu_runstate_gpa',
    'xen_vcpu_callback_vector',
    'xen_virq',
    'xen_singleshot_timer_ns',
    'xen_periodic_timer_period',
  ];
  assert.equal(Object.keys(xenVcpuState.fields), keys);
});

test.run();
