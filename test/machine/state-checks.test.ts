// A saved machine is checked whole before anything is built from it: each
// defect here was accepted once and started a guest that broke (or a
// destination that confirmed and then died).  The states come from the
// golden snapshot, decoded, then damaged one field at a time.  No KVM needed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FormatError } from '../../src/errors.js';
import { checkMachineState } from '../../src/machine/state.js';
import { componentFor } from '../../src/machine/sections.js';
import { openSnapshot } from '../../src/migrate/stream/file.js';
import { decodeState } from '../../src/vmstate/index.js';
import { PortType } from '../../src/xen/tables.js';
import { goldenFiles } from '../helpers/golden.js';

type States = Map<string, Map<number, unknown>>;
// Decoded states are plain objects; the tests reach into them by field name.
type Any = { [k: string]: any };

const golden = goldenFiles()[0]!;
const snap = await openSnapshot(golden);
const config = snap.header.machine as { memBytes: number; vcpus: number };
const decoded: States = new Map();
for await (const r of snap) {
  if (r.kind !== 'section') continue;
  const c = componentFor(r.section.name)!;
  if (!decoded.has(r.section.name)) decoded.set(r.section.name, new Map());
  decoded.get(r.section.name)!.set(r.section.instance, decodeState(c.desc, r.section.payload));
}
await snap.close();

/** A deep copy of the golden states with `edit` applied. */
function damaged(edit: (s: States) => void): States {
  const copy: States = new Map(
    [...decoded].map(([n, m]) => [n, new Map([...m].map(([i, v]) => [i, structuredClone(v)]))]),
  );
  edit(copy);
  return copy;
}
const get = (s: States, name: string, i = 0) => s.get(name)!.get(i) as Any;

function refused(s: States, cfg: { memBytes: number; vcpus: number }, pattern: RegExp): void {
  try {
    checkMachineState(s, cfg, 'f.xks');
  } catch (e) {
    assert.instance(e, FormatError);
    assert.match((e as Error).message, /^f\.xks: /);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`accepted; expected ${pattern}`);
}

test('the golden snapshot passes every check', () => {
  checkMachineState(decoded, config, golden);
});

test('an event-channel port bound to a vCPU the machine lacks (defect 2)', () => {
  const s = damaged((s) => {
    const t = get(s, 'xen_evtchn').port_table as Any[];
    const open = t.findIndex((e) => e.type === PortType.ipi || e.type === PortType.unbound);
    t[open]!.vcpu = config.vcpus;
  });
  refused(s, config, /port_table\[\d+\]\.vcpu: vCPU 2 does not exist/);
});

test('RFLAGS with reserved bits set or bit 1 clear (the fuzzer started a guest from it)', () => {
  for (const fl of [0xffff_ffff_ffff_ffffn, 0n, 0x202n | (1n << 22n)])
    refused(
      damaged((s) => ((get(s, 'cpu', 0).regs as Any).rflags = fl)),
      config,
      /cpu\[0\]\.regs\.rflags: .* reserved bits or clears bit 1/,
    );
});

test('backend ports: only backends this build serves, one port each; closed ports carry nothing', () => {
  const add = (s: States, ...ports: Any[]) => {
    const ev = get(s, 'xen_evtchn');
    (ev.port_table as Any[]).push(...ports);
    ev.nr_ports += ports.length;
  };
  const backend = (value: number) => ({ type: PortType.backend, vcpu: 0, value });
  refused(
    damaged((s) => add(s, backend(9))),
    config,
    /backend 9 is not one this build serves/,
  );
  refused(
    damaged((s) => add(s, backend(1), backend(1))),
    config,
    /backend 1 has another port already/,
  );
  refused(
    damaged((s) => add(s, { type: PortType.closed, vcpu: 1, value: 0 }, backend(2))),
    config,
    /closed port \d+ carries a vCPU or value/,
  );
});

test('a header with fewer vCPUs than the stream has cpu sections (defect 3)', () => {
  refused(decoded, { ...config, vcpus: 1 }, /section cpu\[1\] does not fit the header's machine/);
});

test('a missing section is named (defect 7)', () => {
  refused(
    damaged((s) => s.get('xen_evtchn')!.clear()),
    config,
    /section xen_evtchn\[0\] is missing/,
  );
});

test('a VIRQ bound to a port beyond the table, or to a port that says otherwise (defect 3)', () => {
  refused(
    damaged((s) => ((get(s, 'cpu', 0).xen_vcpu as Any).xen_virq[0] = 4000)),
    config,
    /xen_virq\[0\]: port 4000 is not a port bound to VIRQ 0/,
  );
  const s = damaged((s) => {
    const t = get(s, 'xen_evtchn').port_table as Any[];
    const p = t.findIndex((e) => e.type === PortType.virq);
    t[p]!.value = 5; // claims VIRQ 5 while the vCPU lists it for VIRQ 0
  });
  refused(s, config, /VIRQ 5 port is not the one cpu\[0\] lists|port \d+ is not a port bound to VIRQ/);
});

test('an interdomain port whose remote is 0 or out of range (defect 3)', () => {
  for (const remote of [0, 4095]) {
    const s = damaged((s) => {
      const t = get(s, 'xen_evtchn').port_table as Any[];
      const p = t.findIndex((e) => e.type === PortType.interdomain);
      assert.ok(p > 0, 'the soak guest has interdomain ports');
      t[p]!.value = remote;
    });
    refused(s, config, /remote port \d+ is not an interdomain port bound back/);
  }
});

test('shared_info at all ones, unaligned, on a special page or an interrupt controller (defect 3)', () => {
  for (const [gpa, why] of [
    [0xffff_ffff_ffff_f000n, /not in guest RAM/],
    [0x200010n, /not 4096-byte aligned/],
    [0xfefff000n, /special pages/],
    [0xfee00000n, /interrupt controllers/],
  ] as const)
    refused(
      damaged((s) => (get(s, 'xen_overlay').shinfo_gpa = gpa)),
      config,
      why,
    );
});

test('shared_info of all ones (unset) while the vCPUs use its default vcpu_info slots (defect 3)', () => {
  refused(
    damaged((s) => (get(s, 'xen_overlay').shinfo_gpa = 0xffff_ffff_ffff_ffffn)),
    config,
    /xen_vcpu_info_default_gpa: is set while shared_info is not placed/,
  );
});

test('hypercall page and runstate areas outside RAM; upcall vectors 0..15 (defect 3)', () => {
  refused(
    damaged((s) => (get(s, 'xen_overlay').hypercall_page_gpa = BigInt(config.memBytes) + 4096n)),
    config,
    /hypercall_page_gpa: .* not in guest RAM/,
  );
  refused(
    damaged((s) => ((get(s, 'cpu', 1).xen_vcpu as Any).xen_vcpu_runstate_gpa = 1n << 40n)),
    config,
    /cpu\[1\]\/xen_vcpu\.xen_vcpu_runstate_gpa/,
  );
  for (const vector of [1, 2, 15])
    refused(
      damaged((s) => ((get(s, 'cpu', 0).xen_vcpu as Any).xen_vcpu_callback_vector = vector)),
      config,
      /xen_vcpu_callback_vector: vector \d+ is below 0x10/,
    );
});

test('a TSC frequency no host has (defect 7)', () => {
  refused(
    damaged((s) => (get(s, 'cpu', 0).tsc_khz = 0xffffffff)),
    config,
    /cpu\[0\]\.tsc_khz: 4294967295 kHz is not a TSC frequency/,
  );
});

test.run();
