// The xenstore tree for people, one node a line: `path = "value"`, with the
// permissions where they are not what the node would have inherited from
// its parent (most nodes inherit, so the few that matter stand out).
// `xenkvm ctl … xenstore-ls` and `inspect` both print it.  Values are
// arbitrary bytes (latin1 strings here): anything not printable ASCII is
// shown as \xNN.
import { parentOf } from './store.js';

export interface TreeLine {
  path: string;
  value: string;
  /** Owner first: `n0`, `r1`. */
  perms: readonly string[];
}

/** A value in double quotes, escaped. */
export function quoteValue(v: string): string {
  let out = '"';
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += `\\${v[i]}`;
    else if (c >= 0x20 && c < 0x7f) out += v[i];
    else if (c === 0x0a) out += '\\n';
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

/** One line per node; `nodes` in tree order (parents first). */
export function treeLines(nodes: readonly TreeLine[]): string[] {
  const perms = new Map<string, string>();
  const out: string[] = [];
  for (const n of nodes) {
    const mine = n.perms.join(' ');
    perms.set(n.path, mine);
    const inherited = n.path === '/' || n.path.startsWith('@') ? 'n0' : perms.get(parentOf(n.path));
    out.push(`${n.path} = ${quoteValue(n.value)}${mine === inherited ? '' : `  (${mine})`}`);
  }
  return out;
}
