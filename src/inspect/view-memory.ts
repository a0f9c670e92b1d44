// `xen_memory`: the reservation readably — how much RAM the guest gave back,
// its holes as guest-physical ranges, and the memory map it set itself.
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import { hex, table, type Style } from './text.js';

const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : 0n);
const mib = (pages: bigint): string => `${(Number(pages) / 256).toFixed(pages % 256n === 0n ? 0 : 2)} MiB`;
const E820_TYPES: Readonly<Record<number, string>> = { 1: 'RAM', 2: 'reserved', 3: 'ACPI', 4: 'NVS', 5: 'unusable' };

const records = (v: unknown): StateRecord[] => (Array.isArray(v) ? v.filter(isRecord) : []);

function holeRows(s: StateRecord): string[][] {
  return records(s['holes']).map((h) => {
    const first = big(h['first_pfn']);
    const count = big(h['count']);
    return [hex(first * 4096n), hex((first + count) * 4096n - 1n), String(count), mib(count)];
  });
}

function e820Rows(s: StateRecord): string[][] {
  return records(s['e820']).map((e) => {
    const type = Number(big(e['type']));
    return [hex(big(e['addr'])), hex(big(e['size'])), E820_TYPES[type] ?? `type ${type}`];
  });
}

export const memoryView: SectionView = {
  async render(_ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const views: JsonValue[] = [];
    for (const d of sections) {
      const s = d.state!;
      const ballooned = big(s['ballooned_pages']);
      const holes = holeRows(s);
      lines.push(`ballooned out: ${ballooned} pages (${mib(ballooned)}) in ${holes.length} hole(s)`);
      lines.push(`granted unmapped (increase_reservation): ${big(s['unmapped_pages'])} pages`);
      if (holes.length > 0)
        lines.push('', ...table(['FROM', 'TO', 'PAGES', 'SIZE'], holes, { right: [2, 3], style: st }));
      const e820 = e820Rows(s);
      if (s['guest_e820'] === true) {
        lines.push('', `memory map set by the guest (XENMEM_set_memory_map): ${e820.length} entries`);
        if (e820.length > 0) lines.push(...table(['ADDR', 'SIZE', 'TYPE'], e820, { style: st }));
      } else lines.push("memory map: the machine's own (the guest set none)");
      views.push({ holes: holes.map(([from, to, pages]) => ({ from, to, pages: Number(pages) })) } as JsonValue);
    }
    return { view: views.length === 1 ? views[0]! : views, lines };
  },
};
