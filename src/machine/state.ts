// Saving and restoring a whole machine: walks the component list
// (sections.ts) in order, one section per component instance.  Snapshot and
// migration call these; they never look inside a component.
import { COMPONENTS, streamLayout } from './sections.js';
import type { CheckContext, Component, MachineStateAccess } from './component.js';
import type { MachineConfig } from './config.js';
import type { AnyDescriptor, StateOf } from '../vmstate/index.js';
import { FormatError, KvmError } from '../errors.js';

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
      try {
        c.restore(this.m, i, st);
      } catch (e) {
        // The stream passed every check, so this is KVM saying no to a state it
        // cannot take here: bad input for the user, not a bug.
        if (e instanceof KvmError)
          throw new FormatError(`the saved state was refused by this host's KVM: ${e.message}`, { cause: e });
        throw e;
      }
      this.next++;
    }
  }

  /** Applies the rest; throws if a component's state never came (optional ones may not). */
  finish(): void {
    for (;;) {
      this.advance();
      if (this.next >= this.order.length) return;
      const [c, i] = this.order[this.next]!;
      if (!c.optional) throw new FormatError(`section ${c.desc.name}[${i}] is missing`);
      this.next++;
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

/**
 * Validates a whole decoded machine before anything is built from it: each
 * component's sections present exactly once per instance, as many as the
 * header's configuration implies, then every component's own check.  Throws
 * a FormatError prefixed with `where`.  An optional component's section may
 * be missing altogether (Component.optional).
 */
export function checkMachineState(
  states: Map<string, Map<number, unknown>>,
  config: MachineConfig,
  where: string,
): void {
  const counts = { vcpuCount: config.vcpus };
  try {
    for (const c of COMPONENTS) {
      const want = c.instances(counts);
      const got = states.get(c.desc.name) ?? new Map<number, unknown>();
      for (const i of got.keys())
        if (!Number.isInteger(i) || i < 0 || i >= want)
          throw new FormatError(
            `section ${c.desc.name}[${i}] does not fit the header's machine (${want} instance(s) of ${c.desc.name})`,
          );
      if (c.optional && got.size === 0) continue;
      for (let i = 0; i < want; i++) if (!got.has(i)) throw new FormatError(`section ${c.desc.name}[${i}] is missing`);
    }
    const ctx: CheckContext = {
      config,
      layout: streamLayout(config.memBytes, states),
      state: <D extends AnyDescriptor>(desc: D, instance = 0) => states.get(desc.name)!.get(instance) as StateOf<D>,
      optionalState: <D extends AnyDescriptor>(desc: D, instance = 0) =>
        states.get(desc.name)?.get(instance) as StateOf<D> | undefined,
    };
    for (const c of COMPONENTS) {
      const got = states.get(c.desc.name);
      if (!c.check || !got || got.size === 0) continue;
      for (let i = 0; i < c.instances(counts); i++) c.check(got.get(i), i, ctx);
    }
  } catch (e) {
    if (e instanceof FormatError) throw new FormatError(`${where}: ${e.message}`, { cause: e });
    throw e;
  }
}
