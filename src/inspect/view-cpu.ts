// The `cpu` view: registers as a table with one column per vCPU (so two
// vCPUs read side by side), segments per vCPU, MSRs by name, then each
// vCPU's Xen state.  Reads values by path and shows "-" for anything a
// state of another version lacks, so it also works on schema-decoded files.
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import { msrName } from './msr-names.js';
import { enumName } from './view-generic.js';
import { renderXenVcpu, xenVcpuJson } from './view-xen-vcpu.js';
import { hex, hex64, table, type Style } from './text.js';

export const GPRS = [
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
] as const;
const CONTROL = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;
const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const RFLAGS: ReadonlyArray<[number, string]> = [
  [0, 'CF'],
  [2, 'PF'],
  [4, 'AF'],
  [6, 'ZF'],
  [7, 'SF'],
  [8, 'TF'],
  [9, 'IF'],
  [10, 'DF'],
  [11, 'OF'],
];

/** Value at a dotted path, or undefined. */
export function at(v: unknown, path: string): unknown {
  let cur = v;
  for (const k of path.split('.')) {
    if (!isRecord(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

const h64 = (v: unknown): string => (typeof v === 'bigint' ? hex64(v) : '-');
const hx = (v: unknown): string => (typeof v === 'bigint' || typeof v === 'number' ? hex(v) : '-');

export function rflagsText(v: unknown): string {
  if (typeof v !== 'bigint') return '';
  return RFLAGS.filter(([bit]) => (v >> BigInt(bit)) & 1n)
    .map(([, n]) => n)
    .join(' ');
}

function mpState(d: DecodedSection): string {
  const v = d.state?.['mp_state'];
  const f = d.desc?.fields['mp_state'];
  return typeof v === 'number' && f?.kind === 'enum' ? enumName(f, v) : String(v ?? '-');
}

function msrList(st: StateRecord | undefined): { index: number; data: bigint }[] {
  const list = st?.['msrs'];
  if (!Array.isArray(list)) return [];
  return list.filter(
    (e): e is { index: number; data: bigint } =>
      isRecord(e) && typeof e['index'] === 'number' && typeof e['data'] === 'bigint',
  );
}

function xcr0(st: StateRecord | undefined): unknown {
  const list = st?.['xcrs'];
  return Array.isArray(list) ? list.find((x) => isRecord(x) && x['xcr'] === 0)?.['value'] : undefined;
}

function pendingEvents(st: StateRecord | undefined): string {
  const parts: string[] = [];
  if (at(st, 'events.exception.injected') || at(st, 'events.exception.pending'))
    parts.push(`exception ${String(at(st, 'events.exception.nr'))}`);
  if (at(st, 'events.interrupt.injected')) parts.push(`interrupt ${hx(at(st, 'events.interrupt.nr'))}`);
  if (at(st, 'events.nmi.pending') || at(st, 'events.nmi.injected')) parts.push('NMI');
  if (at(st, 'events.triple_fault.pending')) parts.push('triple fault');
  return parts.length ? parts.join(', ') : 'none';
}

export const cpuView: SectionView = {
  async render(ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const cols = sections.map((d) => ctx.label(d.name, d.instance));
    const rows = (names: readonly string[], prefix: string, fmt: (v: unknown) => string): string[][] =>
      names.map((n) => [n, ...sections.map((d) => fmt(at(d.state, `${prefix}${n}`)))]);
    const right = new Set(cols.map((_, i) => i + 1));
    const lines: string[] = [];
    lines.push(st.bold('general registers'));
    const gpr = rows(GPRS, 'regs.', h64);
    if (sections.length === 1) gpr[gpr.length - 1]!.push(rflagsText(at(sections[0]!.state, 'regs.rflags')));
    lines.push(
      ...table(['REG', ...cols, ...(sections.length === 1 ? [''] : [])], gpr, { right, indent: '  ', style: st }),
      '',
    );
    lines.push(st.bold('control and system registers'));
    const sys = [
      ...rows(CONTROL, 'sregs.', h64),
      ['gdt', ...sections.map((d) => `${h64(at(d.state, 'sregs.gdt.base'))}/${hx(at(d.state, 'sregs.gdt.limit'))}`)],
      ['idt', ...sections.map((d) => `${h64(at(d.state, 'sregs.idt.base'))}/${hx(at(d.state, 'sregs.idt.limit'))}`)],
      ['xcr0', ...sections.map((d) => h64(xcr0(d.state)))],
      ['dr7', ...sections.map((d) => h64(at(d.state, 'debugregs.dr7')))],
    ];
    lines.push(...table(['REG', ...cols], sys, { right, indent: '  ', style: st }), '');
    lines.push(st.bold('vCPU'));
    const misc = [
      ['mp_state', ...sections.map(mpState)],
      ['tsc_khz', ...sections.map((d) => String(d.state?.['tsc_khz'] ?? '-'))],
      ['events', ...sections.map((d) => pendingEvents(d.state))],
      ['cpuid entries', ...sections.map((d) => String(d.state?.['cpuid_count'] ?? '-'))],
      ['xsave bytes', ...sections.map((d) => String(d.state?.['xsave_size'] ?? '-'))],
    ];
    lines.push(...table(['', ...cols], misc, { right, indent: '  ', style: st }), '');
    for (const d of sections) {
      lines.push(st.bold(`segments of ${ctx.label(d.name, d.instance)}`));
      const segRows = SEGMENTS.map((s) => {
        const g = at(d.state, `sregs.${s}`);
        const flag = (k: string, n: string): string => (at(g, k) ? n : '');
        return [
          s,
          hx(at(g, 'selector')),
          h64(at(g, 'base')),
          hx(at(g, 'limit')),
          hx(at(g, 'type')),
          String(at(g, 'dpl') ?? '-'),
          [
            flag('present', 'P'),
            flag('s', 'S'),
            flag('l', 'L'),
            flag('db', 'DB'),
            flag('g', 'G'),
            flag('unusable', 'unusable'),
          ]
            .filter(Boolean)
            .join(' '),
        ];
      });
      lines.push(
        ...table(['SEG', 'SELECTOR', 'BASE', 'LIMIT', 'TYPE', 'DPL', 'FLAGS'], segRows, { indent: '  ', style: st }),
        '',
      );
    }
    // MSRs: one row per index any vCPU has, in index order.
    const byVcpu = sections.map((d) => new Map(msrList(d.state).map((e) => [e.index, e.data])));
    const indices = [...new Set(byVcpu.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
    if (indices.length) {
      lines.push(st.bold('MSRs'));
      const msrRows = indices.map((i) => [hex(i, 8), msrName(i) ?? '', ...byVcpu.map((m) => h64(m.get(i)))]);
      lines.push(
        ...table(['INDEX', 'NAME', ...cols], msrRows, {
          right: new Set(cols.map((_, i) => i + 2)),
          indent: '  ',
          style: st,
        }),
        '',
      );
    }
    for (const d of sections) {
      const x = d.state?.['xen_vcpu'];
      if (!isRecord(x)) continue;
      lines.push(st.bold(`${ctx.label(d.name, d.instance)}/xen_vcpu`), ...renderXenVcpu(ctx, x, '  '), '');
    }
    while (lines[lines.length - 1] === '') lines.pop();
    const view: JsonValue = sections.map((d) => ({
      section: ctx.label(d.name, d.instance),
      registers: Object.fromEntries([
        ...GPRS.map((r) => [r, h64(at(d.state, `regs.${r}`))]),
        ...CONTROL.map((r) => [r, h64(at(d.state, `sregs.${r}`))]),
      ]),
      mp_state: mpState(d),
      msrs: msrList(d.state).map((e) => ({ index: hex(e.index), name: msrName(e.index) ?? null, value: hex(e.data) })),
      xen_vcpu: isRecord(d.state?.['xen_vcpu']) ? xenVcpuJson(ctx, d.state['xen_vcpu']) : null,
    }));
    return { view, lines };
  },
};
