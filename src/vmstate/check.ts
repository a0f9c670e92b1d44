// Compatibility check between two schemas of the same sections: which files
// written by OLD no longer load in NEW ('old-in-new'), and which files written
// by NEW do not load in OLD ('new-in-old').  The rules follow from the wire
// format in codec.ts: fields are positional per version, every field not
// present in a version must be filled from a default or an upgrade hook, and
// a reader refuses versions outside minVersion..version.

import type { FieldSchema, NamedFieldSchema, SectionSchema } from './schema.js';

export interface SchemaBreak {
  section: string;
  path: string;
  breaks: 'old-in-new' | 'new-in-old';
  message: string;
}

export function checkSchemas(
  oldSchemas: SectionSchema | SectionSchema[],
  newSchemas: SectionSchema | SectionSchema[],
): SchemaBreak[] {
  const olds = Array.isArray(oldSchemas) ? oldSchemas : [oldSchemas];
  const news = new Map((Array.isArray(newSchemas) ? newSchemas : [newSchemas]).map((s) => [s.name, s]));
  const out: SchemaBreak[] = [];
  for (const o of olds) {
    const n = news.get(o.name);
    if (n) compareSection(o, n, out);
    else
      out.push({
        section: o.name,
        path: '',
        breaks: 'old-in-new',
        message: 'section removed: files that contain it no longer load',
      });
    news.delete(o.name);
  }
  for (const n of news.values()) {
    out.push({
      section: n.name,
      path: '',
      breaks: 'new-in-old',
      message: 'new section: old builds refuse files that contain it',
    });
  }
  return out;
}

function compareSection(o: SectionSchema, n: SectionSchema, out: SchemaBreak[]): void {
  const push = (breaks: SchemaBreak['breaks'], path: string, message: string): void => {
    out.push({ section: n.name, path, breaks, message });
  };
  if (n.minVersion > o.minVersion) {
    push(
      'old-in-new',
      '',
      `minVersion raised from ${o.minVersion} to ${n.minVersion}: files of versions ${o.minVersion}..${Math.min(o.version, n.minVersion - 1)} no longer load`,
    );
  }
  if (n.version < o.version)
    push(
      'old-in-new',
      '',
      `version lowered from ${o.version} to ${n.version}: files of version ${o.version} are refused`,
    );
  if (n.version > o.version)
    push('new-in-old', '', `version raised from ${o.version} to ${n.version}: old builds read at most ${o.version}`);
  // Only old files the new build still accepts matter for field changes.
  const oldest = Math.max(o.minVersion, n.minVersion);
  if (oldest <= o.version)
    compareFields(o.fields, n.fields, '', { oldVersion: o.version, oldest, newUpgrade: n.upgrade === true }, push);

  const oldSubs = new Map(o.subsections.map((s) => [s.section.name, s]));
  for (const ns of n.subsections) {
    const os = oldSubs.get(ns.section.name);
    oldSubs.delete(ns.section.name);
    if (os) compareSection(os.section, ns.section, out);
    else if (!ns.optional)
      push('new-in-old', `/${ns.section.name}`, 'new mandatory subsection: old builds refuse files that contain it');
  }
  for (const os of oldSubs.values()) {
    if (!os.optional)
      push('old-in-new', `/${os.section.name}`, 'mandatory subsection removed: old files that contain it are refused');
  }
}

interface Ctx {
  oldVersion: number;
  oldest: number;
  newUpgrade: boolean;
}
type Push = (breaks: SchemaBreak['breaks'], path: string, message: string) => void;

function compareFields(o: NamedFieldSchema[], n: NamedFieldSchema[], prefix: string, ctx: Ctx, push: Push): void {
  const at = (name: string): string => (prefix ? `${prefix}.${name}` : name);
  const newByName = new Map(n.map((f) => [f.name, f]));
  // Fields that both sides write, in order: positional decoding needs the same order.
  const common = o.filter((f) => newByName.has(f.name)).map((f) => f.name);
  const newOrder = n.filter((f) => common.includes(f.name)).map((f) => f.name);
  if (common.join() !== newOrder.join()) {
    push('old-in-new', prefix, `fields reordered (${common.join(', ')} became ${newOrder.join(', ')})`);
    push('new-in-old', prefix, 'fields reordered');
  }
  for (const of of o) {
    const nf = newByName.get(of.name);
    if (!nf) {
      push('old-in-new', at(of.name), 'field removed: old files still contain it');
      push('new-in-old', at(of.name), 'field removed: old builds expect it');
      continue;
    }
    if ((of.since ?? 0) !== (nf.since ?? 0) && Math.max(of.since ?? 0, nf.since ?? 0) > ctx.oldest) {
      push(
        'old-in-new',
        at(of.name),
        `since changed from ${of.since ?? 'always'} to ${nf.since ?? 'always'}: old files of some versions are misread`,
      );
    }
    compareKind(of, nf, at(of.name), ctx, push);
  }
  for (const nf of n) {
    if (o.some((f) => f.name === nf.name)) continue;
    if ((nf.since ?? 0) <= ctx.oldVersion) {
      push('old-in-new', at(nf.name), `new field without a since above ${ctx.oldVersion}: old files lack it`);
    } else if (nf.default === undefined && !ctx.newUpgrade) {
      push('old-in-new', at(nf.name), 'new field with neither a default nor an upgrade hook');
    }
  }
}

function compareKind(o: FieldSchema, n: FieldSchema, path: string, ctx: Ctx, push: Push): void {
  const both = (message: string): void => {
    push('old-in-new', path, message);
    push('new-in-old', path, message);
  };
  if (o.kind !== n.kind) return both(`kind changed from ${o.kind} to ${n.kind}`);
  if (o.kind === 'bytes' && n.kind === 'bytes' && o.size !== n.size)
    return both(`size changed from ${o.size} to ${n.size}`);
  if (o.kind === 'array' && n.kind === 'array') {
    if (o.length !== n.length) return both(`length changed from ${o.length} to ${n.length}`);
    return compareKind(o.of, n.of, `${path}[]`, ctx, push);
  }
  if (o.kind === 'varArray' && n.kind === 'varArray') {
    if (n.max < o.max) push('old-in-new', path, `max lowered from ${o.max} to ${n.max}: longer old arrays are refused`);
    if (n.max > o.max)
      push('new-in-old', path, `max raised from ${o.max} to ${n.max}: old builds refuse longer arrays`);
    if (o.lengthField !== n.lengthField) both(`lengthField changed from ${o.lengthField} to ${n.lengthField}`);
    return compareKind(o.of, n.of, `${path}[]`, ctx, push);
  }
  if (o.kind === 'struct' && n.kind === 'struct') return compareFields(o.fields, n.fields, path, ctx, push);
  if (o.kind === 'enum' && n.kind === 'enum') {
    if (o.base !== n.base) return both(`enum base changed from ${o.base} to ${n.base}`);
    const oldVals = new Set(Object.values(o.values));
    const newVals = new Set(Object.values(n.values));
    const gone = [...oldVals].filter((v) => !newVals.has(v));
    const added = [...newVals].filter((v) => !oldVals.has(v));
    if (gone.length) push('old-in-new', path, `enum values removed: ${gone.join(', ')}`);
    if (added.length) push('new-in-old', path, `enum values added: ${added.join(', ')}`);
  }
}
