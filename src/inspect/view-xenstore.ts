// `xenstore`: the daemon's tree as `path = "value"` lines (permissions where
// not inherited), then watches, open transactions, queued output and quota
// use.  Read from the decoded record alone (field names of the section's own
// schema), so a file of another build shows the same way; `diff` compares
// the same facts (xenstoreDiffForm), so a changed node reads as its path.
import { isRecord } from '../vmstate/values.js';
import type { JsonValue, StateRecord } from '../vmstate/index.js';
import { quoteValue, treeLines, type TreeLine } from '../xen/xenstore/tree-text.js';
import type { InspectContext, SectionView, ViewOutput } from './context.js';
import type { DecodedSection } from './decode.js';
import type { Style } from './text.js';

const PERM_LETTERS = 'nrwb';

const list = (v: unknown): StateRecord[] => (Array.isArray(v) ? v.filter(isRecord) : []);
const num = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0);

/** A chunked byte string (`<name>_len`, `<name>` chunks) as a latin1 string. */
function blob(r: StateRecord, name: string): string {
  const len = num(r[`${name}_len`]);
  const chunks = Array.isArray(r[name]) ? (r[name] as unknown[]) : [];
  let s = '';
  for (const c of chunks) if (c instanceof Uint8Array) s += String.fromCharCode(...c);
  return s.slice(0, len);
}

const permsOf = (r: StateRecord): string[] =>
  list(r['perms']).map((p) => `${PERM_LETTERS[num(p['perm'])] ?? '?'}${num(p['domid'])}`);

export interface XenstoreFacts {
  generation: string;
  nodes: TreeLine[];
  watches: string[];
  transactions: string[];
  queued: string[];
  connections: string[];
  owners: string[];
}

/** What the section says, in words; no field of the record is trusted to be well formed. */
export function xenstoreFacts(s: StateRecord): XenstoreFacts {
  const nodes = list(s['nodes']).map((n) => ({ path: blob(n, 'path'), value: blob(n, 'value'), perms: permsOf(n) }));
  const watches = list(s['watches']).map(
    (w) =>
      `dom ${num(w['domid'])}: ${blob(w, 'path')} token ${quoteValue(blob(w, 'token'))}${w['relative'] ? ' (relative)' : ''}`,
  );
  const entries = new Map<string, number>();
  for (const e of list(s['tx_entries'])) {
    const k = `${num(e['domid'])}:${num(e['tx_id'])}`;
    entries.set(k, (entries.get(k) ?? 0) + 1);
  }
  const transactions = list(s['transactions']).map((t) => {
    const k = `${num(t['domid'])}:${num(t['id'])}`;
    return `dom ${num(t['domid'])} transaction ${num(t['id'])}: ${entries.get(k) ?? 0} paths touched${t['fail'] ? ', failed' : ''}`;
  });
  const queued = new Map<number, [number, number]>();
  for (const q of list(s['queued'])) {
    const c = queued.get(num(q['domid'])) ?? [0, 0];
    c[num(q['type']) === 15 ? 1 : 0]++;
    queued.set(num(q['domid']), c);
  }
  return {
    generation: String(s['generation'] ?? '?'),
    nodes,
    watches,
    transactions,
    queued: [...queued].map(
      ([d, [r, e]]) => `dom ${d}: ${r} repl${r === 1 ? 'y' : 'ies'}, ${e} watch event${e === 1 ? '' : 's'}`,
    ),
    connections: list(s['connections']).map((c) => {
      const notes = [c['introduced'] ? 'introduced' : 'not introduced'];
      if (num(c['error']) !== 0) notes.push(`stopped: ring error ${num(c['error'])}`);
      if (num(c['in_len']) !== 0) notes.push(`${num(c['in_len'])} bytes of a request received`);
      return `dom ${num(c['domid'])}${num(c['domid']) === 0 ? ' (toolstack)' : ''}: ${notes.join(', ')}`;
    }),
    owners: list(s['owners']).map((o) => `dom ${num(o['domid'])}: ${num(o['nodes'])} nodes`),
  };
}

/**
 * The section as `diff` compares it: nodes keyed by path (value and, apart,
 * permissions), the rest as sets of lines, so a change reads
 * `xenstore.node./local/domain/1/data/x: "a" → "b"`.
 */
export function xenstoreDiffForm(s: StateRecord): StateRecord {
  const f = xenstoreFacts(s);
  const set = (lines: readonly string[]): StateRecord => Object.fromEntries(lines.map((l) => [l, true]));
  return {
    node: Object.fromEntries(f.nodes.map((n) => [n.path, n.value])),
    perms: Object.fromEntries(f.nodes.map((n) => [n.path, n.perms.join(' ')])),
    watch: set(f.watches),
    transaction: set(f.transactions),
    queued: set(f.queued),
    connection: set(f.connections),
    owner: set(f.owners),
  };
}

export function renderXenstore(f: XenstoreFacts, indent = ''): string[] {
  const section = (title: string, lines: readonly string[]): string[] => [
    `${indent}${title}:${lines.length === 0 ? ' none' : ''}`,
    ...lines.map((l) => `${indent}  ${l}`),
  ];
  return [
    `${indent}generation ${f.generation}, ${f.nodes.length} nodes`,
    ...section('tree', treeLines(f.nodes)),
    ...section('connections', f.connections),
    ...section('watches', f.watches),
    ...section('transactions', f.transactions),
    ...section('queued output', f.queued),
    ...section('nodes owned', f.owners),
  ];
}

export const xenstoreView: SectionView = {
  async render(_ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput> {
    const lines: string[] = [];
    const views: JsonValue[] = [];
    for (const d of sections) {
      const f = xenstoreFacts(d.state!);
      if (sections.length > 1) lines.push(st.bold(`xenstore[${d.instance}]`));
      lines.push(...renderXenstore(f));
      views.push({
        generation: f.generation,
        tree: f.nodes.map((n) => ({ path: n.path, value: n.value, perms: [...n.perms] })),
        connections: f.connections,
        watches: f.watches,
        transactions: f.transactions,
        queued: f.queued,
        owners: f.owners,
      });
    }
    return { view: views.length === 1 ? views[0]! : views, lines };
  },
};
