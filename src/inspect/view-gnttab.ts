// `gnttab`: the grant table's version and size, where each frame is mapped,
// and the entries in use.  The section holds only the bookkeeping; the
// entries are in the frames, which the `xen_pages` section carries (emulator
// page NR_SPECIAL_PAGES + frame; all-zero pages are left out of it).
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import { NR_SPECIAL_PAGES } from '../xen/memory/layout.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import { hex, table, type Style } from './text.js';

const UNMAPPED = 0xffff_ffff_ffff_ffffn;
/** Entries listed before the rest is summed up. */
const MAX_ROWS = 64;
const TYPES = ['invalid', 'permit_access', 'accept_transfer', 'transitive'] as const;
const SUBFLAGS: ReadonlyArray<[number, string]> = [
  [1 << 2, 'readonly'],
  [1 << 3, 'reading'],
  [1 << 4, 'writing'],
  [1 << 8, 'sub_page'],
];

export interface GrantRow {
  ref: number;
  flags: string;
  domid: number;
  frame: string;
}

function flagsText(flags: number): string {
  return [TYPES[flags & 3]!, ...SUBFLAGS.filter(([bit]) => flags & bit).map(([, name]) => name)].join('|');
}

/** The pages of `xen_pages` by emulator page index. */
function savedPages(ctx: InspectContext): Map<number, Uint8Array> {
  const pages = ctx.get('xen_pages')?.state?.['pages'];
  const out = new Map<number, Uint8Array>();
  if (Array.isArray(pages))
    for (const p of pages)
      if (isRecord(p) && typeof p['index'] === 'number' && p['data'] instanceof Uint8Array)
        out.set(p['index'], p['data']);
  return out;
}

/** Entries whose type is not GTF_invalid or that carry any flag, from the saved frames. */
export function grantRows(ctx: InspectContext, nrFrames: number): GrantRow[] {
  const pages = savedPages(ctx);
  const rows: GrantRow[] = [];
  for (let f = 0; f < nrFrames; f++) {
    const page = pages.get(NR_SPECIAL_PAGES + f);
    if (!page || page.length < 4096) continue;
    const v = new DataView(page.buffer, page.byteOffset, 4096);
    for (let e = 0; e < 512; e++) {
      const flags = v.getUint16(e * 8, true);
      if (flags === 0) continue;
      rows.push({
        ref: f * 512 + e,
        flags: flagsText(flags),
        domid: v.getUint16(e * 8 + 2, true),
        frame: hex(v.getUint32(e * 8 + 4, true)),
      });
    }
  }
  return rows;
}

function frameLines(s: StateRecord, st: Style): { lines: string[]; frames: JsonValue[] } {
  const list = Array.isArray(s['frame_gpfn']) ? (s['frame_gpfn'] as unknown[]) : [];
  const frames = list.map((g, f) => ({ frame: f, gpfn: typeof g === 'bigint' && g !== UNMAPPED ? hex(g) : null }));
  const mapped = frames.filter((f) => f.gpfn !== null);
  const lines =
    mapped.length === 0
      ? ['no frame is mapped into the guest']
      : table(
          ['FRAME', 'GPFN', 'GPA'],
          mapped.map((f) => [String(f.frame), f.gpfn!, hex(BigInt(f.gpfn!) * 4096n)]),
          { right: [0], style: st },
        );
  return { lines, frames };
}

export const gnttabView: SectionView = {
  async render(ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const views: JsonValue[] = [];
    for (const d of sections) {
      const s = d.state!;
      const nr = typeof s['nr_frames'] === 'number' ? s['nr_frames'] : 0;
      lines.push(`grant table v${String(s['version'] ?? '?')}: ${nr} frame(s), ${nr * 512} entries`);
      const { lines: fl, frames } = frameLines(s, st);
      lines.push(...fl);
      const rows = grantRows(ctx, nr);
      if (!ctx.get('xen_pages')) lines.push('', 'entries: unknown (no xen_pages section)');
      else if (rows.length === 0) lines.push('', 'no entry is in use');
      else {
        const cells = rows.slice(0, MAX_ROWS).map((r) => [String(r.ref), r.flags, String(r.domid), r.frame]);
        lines.push('', ...table(['REF', 'FLAGS', 'DOMID', 'FRAME'], cells, { right: [0, 2], style: st }));
        if (rows.length > MAX_ROWS) lines.push(`... and ${rows.length - MAX_ROWS} more`);
      }
      views.push({ frames, entries: rows as unknown as JsonValue });
    }
    return { view: views.length === 1 ? views[0]! : views, lines };
  },
};
