// A loaded snapshot with every section decoded: what the views work from.
import { sectionLabel, SectionDecoder, singleInstanceNames, type DecodedSection } from './decode.js';
import type { LoadedSnapshot } from './snapshot.js';
import type { JsonValue } from '../vmstate/index.js';
import type { Style } from './text.js';

/** Sections addressed by vCPU index: always shown with their instance (`cpu[0]`). */
const PER_VCPU = new Set(['cpu']);

export class InspectContext {
  readonly decoded: readonly DecodedSection[];
  private readonly single: Set<string>;

  constructor(
    readonly snap: LoadedSnapshot,
    others: readonly { name: string; instance: number }[] = [],
  ) {
    const dec = new SectionDecoder(snap.header.schemas);
    this.decoded = snap.sections.map((s) => dec.decode(s));
    this.single = singleInstanceNames(snap.sections, others);
    for (const n of PER_VCPU) this.single.delete(n);
  }

  label(name: string, instance: number): string {
    return sectionLabel(name, instance, this.single.has(name));
  }

  get(name: string, instance = 0): DecodedSection | undefined {
    return this.decoded.find((d) => d.name === name && d.instance === instance);
  }

  all(name: string): DecodedSection[] {
    return this.decoded.filter((d) => d.name === name);
  }
}

export interface ViewOutput {
  /** Extra, view-specific data for --json (addresses as "0x" hex strings); null when the view adds nothing. */
  readonly view: JsonValue | null;
  readonly lines: string[];
}

/** A view of one section name; `sections` are the selected instances, all decoded. */
export interface SectionView {
  render(ctx: InspectContext, sections: readonly DecodedSection[], st: Style): Promise<ViewOutput>;
}
