// Decoding a section for people.  The descriptor used is the local one when
// the file's embedded schema for that section is exactly what this build
// writes (hooks such as postLoad then run); otherwise a descriptor rebuilt
// from the embedded schema, so a section of another version, or one this
// build has never heard of, still decodes field by field.
import { VmstateError, XenkvmError } from '../errors.js';
import {
  decodeState,
  descriptorFromSchema,
  schemaOf,
  type AnyDescriptor,
  type SectionSchema,
} from '../vmstate/index.js';
import type { StateRecord } from '../vmstate/index.js';
import { localDescriptor } from './descriptors.js';
import type { RawSection } from './snapshot.js';

export type DecodedBy = 'local' | 'schema';

export interface DecodedSection {
  readonly name: string;
  readonly instance: number;
  readonly version: number;
  readonly raw: RawSection;
  /** Present when decoding worked. */
  readonly desc?: AnyDescriptor;
  readonly state?: StateRecord;
  readonly decodedBy?: DecodedBy;
  /** Why it could not be decoded (no schema, bad payload). */
  readonly error?: string;
}

/** Stable text of a JSON-like value with sorted keys, for schema equality. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

export class SectionDecoder {
  private readonly rebuilt = new Map<string, AnyDescriptor | string>();
  constructor(private readonly schemas: Readonly<Record<string, unknown>>) {}

  /** The descriptor for section `name` of this file, and whose it is; or why there is none. */
  descriptorFor(name: string, version: number): { desc: AnyDescriptor; by: DecodedBy } | { error: string } {
    const embedded = Object.hasOwn(this.schemas, name) ? this.schemas[name] : undefined;
    const local = localDescriptor(name);
    if (
      local &&
      (embedded === undefined ? version === local.version : canonical(embedded) === canonical(schemaOf(local)))
    )
      return { desc: local, by: 'local' };
    if (embedded === undefined) {
      return {
        error: local
          ? `version ${version} differs from this build's ${local.version} and the file embeds no schema for it`
          : 'no local descriptor and no schema in the file',
      };
    }
    let d = this.rebuilt.get(name);
    if (d === undefined) {
      try {
        d = descriptorFromSchema(embedded);
      } catch (e) {
        d = `embedded schema is invalid: ${e instanceof Error ? e.message : String(e)}`;
      }
      this.rebuilt.set(name, d);
    }
    return typeof d === 'string' ? { error: d } : { desc: d, by: 'schema' };
  }

  decode(raw: RawSection): DecodedSection {
    const base = { name: raw.name, instance: raw.instance, version: raw.version, raw };
    const found = this.descriptorFor(raw.name, raw.version);
    if ('error' in found) return { ...base, error: found.error };
    try {
      const state = decodeState(found.desc, raw.payload) as StateRecord;
      return { ...base, desc: found.desc, state, decodedBy: found.by };
    } catch (e) {
      if (!(e instanceof XenkvmError)) throw e;
      const msg = e instanceof VmstateError ? e.withPrefix(`${raw.name}[${raw.instance}]`).message : e.message;
      return { ...base, error: msg };
    }
  }
}

/** Name as people read it: `cpu[1]`, or `kvmclock` for a section that has only instance 0. */
export function sectionLabel(name: string, instance: number, single: boolean): string {
  return single && instance === 0 ? name : `${name}[${instance}]`;
}

/** Names that appear with one instance only (instance 0) among `sections`. */
export function singleInstanceNames(...lists: readonly (readonly { name: string; instance: number }[])[]): Set<string> {
  const multi = new Set<string>();
  const all = new Set<string>();
  for (const list of lists)
    for (const s of list) {
      all.add(s.name);
      if (s.instance !== 0) multi.add(s.name);
    }
  return new Set([...all].filter((n) => !multi.has(n)));
}

export type { SectionSchema };
