// `xen_evtchn`: the port table as a table.  Pending and mask bits are not in
// the section: like Xen, the emulator keeps them in the shared_info page, so
// they are read from the saved RAM (only that page) at `xen_overlay.shinfo_gpa`.
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import { PAGE_SIZE } from '../migrate/index.js';
import { virqName } from '../xen/evtchn/virq-names.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import { hex, table, type Style } from './text.js';

/** Byte offsets in shared_info of evtchn_pending[] and evtchn_mask[] (xen/include/public/xen.h). */
export const SHINFO_BITS = { long: { pending: 2048, mask: 2560 }, compat: { pending: 2048, mask: 2176 } } as const;
/** Port types (xen_evtchn's enum; also in the embedded schema). */
const TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'closed',
  1: 'unbound',
  2: 'interdomain',
  3: 'pirq',
  4: 'virq',
  5: 'ipi',
};
const INVALID = 0xffffffffffffffffn;

export interface PortRow {
  port: number;
  type: string;
  vcpu: number;
  virq: string | null;
  remote: string | null;
  pending: boolean | null;
  masked: boolean | null;
}

interface Bits {
  pending: Uint8Array;
  mask: Uint8Array;
}

/** The pending and mask bitmaps from shared_info, or why they cannot be read. */
async function shinfoBits(ctx: InspectContext, ports: number): Promise<Bits | string> {
  const ov = ctx.get('xen_overlay')?.state;
  const gpa = ov?.['shinfo_gpa'];
  if (typeof gpa !== 'bigint') return 'no xen_overlay section';
  if (gpa === INVALID || gpa === 0n) return 'the guest had not mapped shared_info';
  const g = Number(gpa);
  if (!Number.isSafeInteger(g) || g % PAGE_SIZE !== 0 || g / PAGE_SIZE >= ctx.snap.pages.index.guestPages)
    return `shared_info at ${hex(gpa)} is outside guest RAM`;
  const layout = ov?.['long_mode'] === false ? SHINFO_BITS.compat : SHINFO_BITS.long;
  const bytes = Math.ceil(ports / 8);
  const page = await ctx.snap.pages.readGuest(g, PAGE_SIZE);
  return {
    pending: page.subarray(layout.pending, layout.pending + bytes),
    mask: page.subarray(layout.mask, layout.mask + bytes),
  };
}

const bit = (b: Uint8Array, p: number): boolean => (((b[p >> 3] ?? 0) >> (p & 7)) & 1 ? true : false);

function callbackText(v: unknown): string {
  if (typeof v !== 'bigint') return '-';
  if (v === 0n) return '0 (none)';
  // HVM_PARAM_CALLBACK_IRQ: type in bits 63..56 (0 GSI, 1 PCI INTx, 2 vector), value below.
  const type = Number(v >> 56n);
  const val = v & 0xffffffffffffffn;
  const what = type === 0 ? `GSI ${val}` : type === 1 ? 'PCI INTx' : type === 2 ? `vector ${hex(val)}` : `type ${type}`;
  return `${hex(v)} (${what})`;
}

/** Port type names from the section's own enum (so a file of another version names its own types). */
function typeNames(d: DecodedSection): Readonly<Record<number, string>> {
  const f = d.desc?.fields['port_table'];
  const t = f?.kind === 'varArray' && f.of.kind === 'struct' ? f.of.fields['type'] : undefined;
  return t?.kind === 'enum' ? Object.fromEntries(Object.entries(t.values).map(([k, v]) => [v, k])) : TYPE_NAMES;
}

export async function portRows(
  ctx: InspectContext,
  st: StateRecord,
  names = TYPE_NAMES,
): Promise<{ rows: PortRow[]; bitsNote: string | null }> {
  const table = Array.isArray(st['port_table']) ? (st['port_table'] as unknown[]) : [];
  const bits = await shinfoBits(ctx, table.length);
  const rows: PortRow[] = [];
  table.forEach((e, port) => {
    if (!isRecord(e) || e['type'] === 0) return;
    const type = typeof e['type'] === 'number' ? e['type'] : -1;
    const value = typeof e['value'] === 'number' ? e['value'] : 0;
    rows.push({
      port,
      type: names[type] ?? `type ${type}`,
      vcpu: typeof e['vcpu'] === 'number' ? e['vcpu'] : -1,
      virq: type === 4 ? virqName(value) : null,
      remote: type === 2 ? `port ${value}` : type === 1 ? `dom ${value}` : type === 3 ? `pirq ${value}` : null,
      pending: typeof bits === 'string' ? null : bit(bits.pending, port),
      masked: typeof bits === 'string' ? null : bit(bits.mask, port),
    });
  });
  return { rows, bitsNote: typeof bits === 'string' ? bits : null };
}

const yn = (b: boolean | null): string => (b === null ? '-' : b ? 'yes' : 'no');

export const evtchnView: SectionView = {
  async render(ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const views: JsonValue[] = [];
    for (const d of sections) {
      const s = d.state!;
      const { rows, bitsNote } = await portRows(ctx, s, typeNames(d));
      lines.push(`callback (HVM_PARAM_CALLBACK_IRQ): ${callbackText(s['callback_param'])}`);
      lines.push(`ports: ${rows.length} open of ${String(s['nr_ports'] ?? '?')} listed`);
      if (bitsNote) lines.push(`pending/masked: unknown (${bitsNote})`);
      if (rows.length === 0) lines.push('no event channel ports are open');
      else {
        const cells = rows.map((r) => [
          String(r.port),
          r.type,
          String(r.vcpu),
          r.virq ?? '-',
          r.remote ?? '-',
          r.pending ? st.yellow('yes') : yn(r.pending),
          yn(r.masked),
        ]);
        lines.push(
          '',
          ...table(['PORT', 'TYPE', 'VCPU', 'VIRQ', 'REMOTE', 'PENDING', 'MASKED'], cells, {
            right: [0, 2],
            style: st,
          }),
        );
      }
      views.push({
        callback_param: typeof s['callback_param'] === 'bigint' ? hex(s['callback_param']) : null,
        ports: rows as unknown as JsonValue,
      });
    }
    return { view: views.length === 1 ? views[0]! : views, lines };
  },
};
