// Schemas for `xenkvm schema`: this build's, printed for people or as JSON;
// and sets of schemas read from a schema JSON file or a snapshot's header,
// checked against each other with vmstate's checkSchemas.
import { readFile } from 'node:fs/promises';
import { InputError, IoError } from '../errors.js';
import { openSnapshot } from '../migrate/index.js';
import {
  checkSchemas,
  descriptorFromSchema,
  schemaOf,
  type FieldSchema,
  type NamedFieldSchema,
  type SchemaBreak,
  type SectionSchema,
} from '../vmstate/index.js';
import { isRecord } from '../vmstate/values.js';
import { currentSchemas } from './descriptors.js';
import { table, type Style, PLAIN } from './text.js';

/** What `schema --json` prints and `schema check` reads. */
export interface SchemaSet {
  /** Where it came from: a path, or "this build". */
  readonly source: string;
  readonly sections: Readonly<Record<string, SectionSchema>>;
  /** Read from a file holding one section's schema alone (e.g. fixtures/vmstate/*.schema.json). */
  readonly single: boolean;
}

export function currentSchemaSet(): SchemaSet {
  return { source: 'this build', sections: currentSchemas(), single: false };
}

export function schemaSetJson(set: SchemaSet): { sections: Record<string, SectionSchema> } {
  return { sections: { ...set.sections } };
}

/**
 * Each schema must rebuild into a descriptor, and what is checked is the
 * schema of that descriptor: checkSchemas trusts shapes, and a schema the
 * rebuild accepts may still leave out parts (no `subsections` list reads as
 * none) or carry keys it ignores.
 */
function validated(source: string, raw: unknown): Record<string, SectionSchema> {
  if (!isRecord(raw)) throw new InputError(`${source}: 'sections' must map section names to schemas`);
  const out: Record<string, SectionSchema> = {};
  for (const [name, s] of Object.entries(raw)) {
    let schema: SectionSchema;
    try {
      schema = schemaOf(descriptorFromSchema(s));
    } catch (e) {
      throw new InputError(
        `${source}: the schema of section ${name} is invalid: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
    if (schema.name !== name) throw new InputError(`${source}: the schema under '${name}' is named '${schema.name}'`);
    out[name] = schema;
  }
  return out;
}

const MAGIC_PREFIX = Buffer.from('XENKVM\u0000', 'latin1');

/** A schema JSON file (`{sections: {...}}`, or one section's schema), or a snapshot (its embedded schemas). */
export async function loadSchemaSet(path: string): Promise<SchemaSet> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new IoError(
      `cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  if (bytes.subarray(0, MAGIC_PREFIX.length).equals(MAGIC_PREFIX)) {
    // A snapshot: the schemas are in its header, but a file that is cut short or damaged
    // further on is no snapshot to vouch for, so it is read to its END (page data skipped).
    const f = await openSnapshot(path, { skipRamData: true });
    try {
      const sections = validated(path, f.header.schemas);
      for await (const _ of f);
      return { source: path, sections, single: false };
    } finally {
      await f.close();
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new InputError(
      `${path}: neither a xenkvm snapshot nor JSON (${e instanceof Error ? e.message : String(e)})`,
      { cause: e },
    );
  }
  if (isRecord(json) && isRecord(json['sections']))
    return { source: path, sections: validated(path, json['sections']), single: false };
  if (isRecord(json) && typeof json['name'] === 'string' && Array.isArray(json['fields'])) {
    return { source: path, sections: validated(path, { [json['name']]: json }), single: true };
  }
  throw new InputError(
    `${path}: not a schema file: expected {"sections": {NAME: schema}} as \`xenkvm schema --json\` prints, or one section's schema`,
  );
}

/** The schema of `name` in `set`, looking into subsections too (`cpu/xen_vcpu`). */
function findSection(set: SchemaSet, name: string): SectionSchema | undefined {
  const walk = (s: SectionSchema): SectionSchema | undefined =>
    s.name === name ? s : s.subsections.map((x) => walk(x.section)).find(Boolean);
  return Object.values(set.sections).map(walk).find(Boolean);
}

export interface SchemaCheck {
  old: string;
  new: string;
  /** Files of OLD load in NEW. */
  oldInNew: SchemaBreak[];
  /** Files of NEW load in OLD. */
  newInOld: SchemaBreak[];
}

export function checkSchemaSets(o: SchemaSet, n: SchemaSet): SchemaCheck {
  let olds = Object.values(o.sections);
  let news = Object.values(n.sections);
  // A file holding one section is compared with that section only.
  if (o.single || n.single) {
    const name = (o.single ? olds[0] : news[0])!.name;
    olds = [findSection(o, name)].filter((s): s is SectionSchema => s !== undefined);
    news = [findSection(n, name)].filter((s): s is SectionSchema => s !== undefined);
  }
  const breaks = checkSchemas(olds, news);
  return {
    old: o.source,
    new: n.source,
    oldInNew: breaks.filter((b) => b.breaks === 'old-in-new'),
    newInOld: breaks.filter((b) => b.breaks === 'new-in-old'),
  };
}

export function renderSchemaCheck(c: SchemaCheck, st: Style = PLAIN): string[] {
  const block = (title: string, list: SchemaBreak[]): string[] => [
    list.length === 0
      ? `${st.green('yes')}: ${title}`
      : `${st.red('no')}: ${title}: ${list.length} breaking change${list.length === 1 ? '' : 's'}`,
    ...list.map((b) => `  ${b.section}${b.path ? (b.path.startsWith('/') ? b.path : `.${b.path}`) : ''}: ${b.message}`),
  ];
  return [
    ...block(`files written by ${c.old} load in ${c.new}`, c.oldInNew),
    ...block(`files written by ${c.new} load in ${c.old}`, c.newInOld),
  ];
}

function kindText(f: FieldSchema): string {
  switch (f.kind) {
    case 'bytes':
      return `bytes[${f.size}]`;
    case 'array':
      return `${kindText(f.of)}[${f.length}]`;
    case 'varArray':
      return `${kindText(f.of)}[≤${f.max}, count in ${f.lengthField}]`;
    case 'struct':
      return 'struct';
    case 'enum':
      return `enum ${f.base} {${Object.entries(f.values)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}}`;
    default:
      return f.kind;
  }
}

/** `[0 × 24]` rather than 24 zeros. */
function defaultText(v: unknown): string {
  if (Array.isArray(v) && v.length > 4 && v.every((x) => JSON.stringify(x) === JSON.stringify(v[0])))
    return `[${JSON.stringify(v[0])} × ${v.length}]`;
  return JSON.stringify(v);
}

function fieldRows(fields: readonly NamedFieldSchema[], indent: string): string[][] {
  // Sibling structs with the same fields (the eight segment registers) are listed once.
  const seen = new Map<string, string>();
  return fields.flatMap((f) => {
    const notes = [
      f.since !== undefined ? `since ${f.since}` : '',
      'default' in f ? `default ${defaultText(f.default)}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    const inner =
      f.kind === 'struct'
        ? f.fields
        : (f.kind === 'array' || f.kind === 'varArray') && f.of.kind === 'struct'
          ? f.of.fields
          : null;
    if (!inner) return [[`${indent}${f.name}`, kindText(f), notes]];
    const key = JSON.stringify(inner);
    const first = seen.get(key);
    if (first !== undefined) return [[`${indent}${f.name}`, `${kindText(f)} (fields as ${first})`, notes]];
    seen.set(key, f.name);
    return [[`${indent}${f.name}`, kindText(f), notes], ...fieldRows(inner, `${indent}  `)];
  });
}

function sectionLines(s: SectionSchema, st: Style, how: string): string[] {
  const out = [
    st.bold(
      `${s.name}  version ${s.version}${s.minVersion < s.version ? ` (reads ${s.minVersion}..${s.version})` : ''}${how}${s.upgrade ? ', upgrade hook' : ''}`,
    ),
  ];
  out.push(...table(['FIELD', 'KIND', 'VERSIONING'], fieldRows(s.fields, ''), { indent: '  ', style: st }).slice(1));
  for (const sub of s.subsections)
    out.push(
      ...sectionLines(sub.section, st, `, ${sub.optional ? 'optional' : 'mandatory'} subsection of ${s.name}`).map(
        (l) => `  ${l}`,
      ),
    );
  return out;
}

export function renderSchemaSet(set: SchemaSet, st: Style = PLAIN): string[] {
  return Object.values(set.sections).flatMap((s, i) => [...(i ? [''] : []), ...sectionLines(s, st, '')]);
}
