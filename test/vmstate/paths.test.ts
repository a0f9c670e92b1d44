// Error paths as users see them: the section instance is prefixed by the
// caller, subsections appear as `/key`, fields as `.name`, elements as `[i]`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VmstateError } from '../../src/errors.js';
import { decodeState, decodeWithSchema, defineState, encodeState, schemaOf, u64, u8 } from '../../src/vmstate/index.js';
import { initialXenVcpuState, xenVcpuState } from '../../src/xen/vcpu/state.js';

const cpu = defineState({
  name: 'cpu',
  version: 1,
  fields: { rip: u64() },
  subsections: { xen_vcpu: { state: xenVcpuState, optional: true } },
});

function caught(fn: () => unknown): VmstateError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, VmstateError);
    return e as VmstateError;
  }
  throw new Error('expected a VmstateError');
}

test('a bad VIRQ port in vCPU 1 reads cpu[1]/xen_vcpu.xen_virq[3]', () => {
  const env = encodeState(cpu, { rip: 0x1000n, xen_vcpu: initialXenVcpuState() });
  const sub = env.s!['cpu/xen_vcpu']!;
  const virq = [...((sub.f as unknown[])[5] as number[])];
  virq[3] = 70000;
  const f = [...(sub.f as unknown[])];
  f[5] = virq;
  const e = caught(() => decodeState(cpu, { ...env, s: { 'cpu/xen_vcpu': { ...sub, f } } })).withPrefix('cpu[1]');
  assert.is(e.path, 'cpu[1]/xen_vcpu.xen_virq[3]');
  assert.is(e.code, 'E_VMSTATE');
  assert.match(e.message, /^cpu\[1\]\/xen_vcpu\.xen_virq\[3\]: expected u16 \(0\.\.65535\), got 70000$/);
});

test('generic decode reports the same path as the typed decode', () => {
  const env = encodeState(cpu, { rip: 1n, xen_vcpu: initialXenVcpuState() });
  const bad = { ...env, s: { 'cpu/xen_vcpu': { ...env.s!['cpu/xen_vcpu']!, v: 7 } } };
  const typed = caught(() => decodeState(cpu, bad));
  const generic = caught(() => decodeWithSchema(JSON.parse(JSON.stringify(schemaOf(cpu))), bad));
  assert.is(typed.message, generic.message);
  assert.is(typed.path, '/xen_vcpu');
  assert.match(typed.message, /section cpu\/xen_vcpu: input version 7 is newer than 2/);
});

test('maxSubsections bounds the entries an envelope may carry', () => {
  const env = encodeState(cpu, { rip: 1n });
  const s = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`cpu/x${i}`, { v: 1, f: [], o: true }]));
  assert.is(decodeState(cpu, { ...env, s }).rip, 1n);
  assert.match(
    caught(() => decodeState(cpu, { ...env, s }, { limits: { maxSubsections: 4 } })).message,
    /5 subsections exceed the limit of 4/,
  );
});

test('a schema with an upgrade hook reads late fields without default as zero', () => {
  const d = defineState({
    name: 'u',
    version: 2,
    minVersion: 1,
    fields: { a: u8(), b: u8({ since: 2 }) },
    upgrade(s) {
      s.b = s.a * 2;
    },
  });
  const schema = JSON.parse(JSON.stringify(schemaOf(d)));
  assert.is(schema.upgrade, true);
  const old = encodeState(d, { a: 4, b: 0 }, { version: 1 });
  assert.equal(decodeState(d, old), { a: 4, b: 8 });
  assert.equal(decodeWithSchema(schema, old), { a: 4, b: 0 });
});

test.run();
