// Field-level difference of two decoded states (typed or from decodeWithSchema).
// Works on values alone, so it can compare states of different builds; the
// order is that of the first state's keys, then keys only the second has.

import { isRecord } from './values.js';

export interface StateChange {
  /** `regs.rax`, `xen_vcpu.xen_virq[0]`, `xsave[64..127]` (a byte range). */
  path: string;
  a: unknown;
  b: unknown;
}

export interface DiffOptions {
  /**
   * Paths to leave out.  A pattern matches a path or any path below it;
   * `*` matches any run of characters (`*.tsc`, `kvmclock.clock`).
   */
  ignore?: string[];
}

export function diffStates(a: unknown, b: unknown, opts: DiffOptions = {}): StateChange[] {
  const ignore = (opts.ignore ?? []).map((g) => globToRegExp(g));
  const out: StateChange[] = [];
  walk(a, b, '', (path) => ignore.some((re) => re.test(path)), out);
  return out;
}

/**
 * A path glob: `*` is any run of characters.  A match must end where a path
 * segment ends (`cpu.tsc` covers `cpu.tsc.x`, not `cpu.tsc_deadline`), or
 * with `whole`, at the end of the path.
 */
export function globToRegExp(glob: string, whole = false): RegExp {
  const body = glob
    .split('*')
    .map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
    .join('.*');
  return new RegExp(whole ? `^${body}$` : `^${body}(?=$|[.[/])`);
}

const join = (prefix: string, key: string): string => (prefix ? `${prefix}.${key}` : key);

function walk(a: unknown, b: unknown, path: string, ignored: (p: string) => boolean, out: StateChange[]): void {
  if (path && ignored(path)) return;
  if (a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length)
    return diffBytes(a, b, path, ignored, out);
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    for (let i = 0; i < a.length; i++) walk(a[i], b[i], `${path}[${i}]`, ignored, out);
    return;
  }
  if (isRecord(a) && isRecord(b)) {
    const keys = [...Object.keys(a), ...Object.keys(b).filter((k) => !Object.hasOwn(a, k))];
    for (const k of keys) walk(a[k], b[k], join(path, k), ignored, out);
    return;
  }
  if (!Object.is(a, b)) out.push({ path, a, b });
}

/** Bytes differ as ranges (`xsave[64..127]`, inclusive), not 4096 one-byte changes. */
function diffBytes(
  a: Uint8Array,
  b: Uint8Array,
  path: string,
  ignored: (p: string) => boolean,
  out: StateChange[],
): void {
  let i = 0;
  while (i < a.length) {
    if (a[i] === b[i]) {
      i++;
      continue;
    }
    const start = i;
    while (i < a.length && a[i] !== b[i]) i++;
    const p = i - start === 1 ? `${path}[${start}]` : `${path}[${start}..${i - 1}]`;
    if (!ignored(p)) out.push({ path: p, a: a.slice(start, i), b: b.slice(start, i) });
  }
}
