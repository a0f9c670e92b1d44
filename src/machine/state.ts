// Saving and restoring a whole machine: walks the component list
// (sections.ts) in order, one section per component instance.  Snapshot and
// migration call these; they never look inside a component.
import { COMPONENTS } from './sections.js';
import type { Component, MachineStateAccess } from './component.js';
import type { AnyDescriptor } from '../vmstate/index.js';

export interface SavedSection {
  name: string;
  instance: number;
  desc: AnyDescriptor;
  state: unknown;
}

/** Reads every component of a paused machine. */
export function saveMachineState(m: MachineStateAccess): SavedSection[] {
  const out: SavedSection[] = [];
  for (const c of COMPONENTS)
    for (let i = 0; i < c.instances(m); i++)
      out.push({ name: c.desc.name, instance: i, desc: c.desc, state: c.save(m, i) });
  return out;
}

/** Every component's `sample` (or `save`): safe on a running machine; see Component.sample. */
export function sampleMachineState(m: MachineStateAccess): SavedSection[] {
  const out: SavedSection[] = [];
  for (const c of COMPONENTS) {
    for (let i = 0; i < c.instances(m); i++)
      out.push({ name: c.desc.name, instance: i, desc: c.desc, state: (c.sample ?? c.save)(m, i) });
  }
  return out;
}

/**
 * Restores components in list order as their states come in: a migration's
 * final round streams its sections, and each is applied while the source
 * still saves and sends the next.  `states` maps name → instance → state and
 * may grow between calls of advance().
 */
export class MachineRestore {
  private next = 0;
  private readonly order: ReadonlyArray<readonly [Component, number]>;
  constructor(
    private readonly m: MachineStateAccess,
    private readonly states: Map<string, Map<number, unknown>>,
  ) {
    this.order = COMPONENTS.flatMap((c) => Array.from({ length: c.instances(m) }, (_, i) => [c, i] as const));
  }

  /** Applies every component whose turn has come and whose state is in. */
  advance(): void {
    while (this.next < this.order.length) {
      const [c, i] = this.order[this.next]!;
      const st = this.states.get(c.desc.name)?.get(i);
      if (st === undefined) return;
      c.restore(this.m, i, st);
      this.next++;
    }
  }

  /** Applies the rest; throws if a component's state never came. */
  finish(): void {
    this.advance();
    if (this.next < this.order.length) {
      const [c, i] = this.order[this.next]!;
      throw new Error(`section ${c.desc.name}[${i}] is missing`);
    }
  }
}

/** Applies decoded sections in component order; `states` maps name → instance → state. */
export function restoreMachineState(m: MachineStateAccess, states: Map<string, Map<number, unknown>>): void {
  new MachineRestore(m, states).finish();
}

/** Saves each component of a paused machine in turn, handing each to `emit` before reading the next. */
export async function saveMachineStateEach(
  m: MachineStateAccess,
  emit: (s: SavedSection) => Promise<void>,
): Promise<void> {
  for (const c of COMPONENTS)
    for (let i = 0; i < c.instances(m); i++)
      await emit({ name: c.desc.name, instance: i, desc: c.desc, state: c.save(m, i) });
}
