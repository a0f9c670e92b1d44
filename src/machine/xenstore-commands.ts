// The toolstack's xenstore commands on the control socket: xenstore-read,
// -write, -rm, -ls, -watch, and shutdown/reboot through control/shutdown
// (the PV shutdown protocol: the toolstack writes the request, a guest that
// watches the node acknowledges and shuts itself down).  They reach the
// daemon only through `XenstoreTarget`, so the protocol side is tested with
// a fake.  docs/xenstore.md, "The toolstack".
import { InputError } from '../errors.js';
import type { JsonObject } from '../qmp/protocol.js';
import type { CommandRegistry } from '../qmp/registry.js';
import { arg } from '../qmp/schema.js';
import type { EventSink } from '../qmp/server.js';
import type { RunState } from './qmp-commands.js';
import type { XsTreeEntry, XsWatchEvent } from './xenstore-backend.js';

/** The daemon as the toolstack (domain 0) uses it; XenstoreToolstack implements it. */
export interface XenstoreOps {
  read(path: string): string;
  write(path: string, value: string): void;
  rm(path: string): void;
  list(path?: string): XsTreeEntry[];
  watch(path: string, onEvent: (e: XsWatchEvent) => void): () => void;
  requestShutdown(reason: 'poweroff' | 'reboot'): void;
}

export interface XenstoreTarget {
  /** null when the guest has no xenstore (restored from a snapshot older than xenstore). */
  xenstore(): XenstoreOps | null;
  status(): RunState;
  events(): EventSink | null;
}

/** The QMP event each watch firing sends: its path and the watch's id (the command's token). */
export const WATCH_EVENT = 'XENSTORE_WATCH';
/** Paths and values: xenstore's own limits (docs/xenstore.md). */
const PATH_MAX = 3072;
const VALUE_MAX = 4096;
/** How often a watch without a count checks that the machine still runs. */
const WATCH_POLL_MS = 200;

function ops(t: XenstoreTarget): XenstoreOps {
  const x = t.xenstore();
  if (!x) throw new InputError('this guest has no xenstore (it was restored from a snapshot older than xenstore)');
  return x;
}

const entryJson = (e: XsTreeEntry): JsonObject => ({ path: e.path, value: e.value, perms: e.perms });

export function registerXenstoreCommands(registry: CommandRegistry, target: XenstoreTarget): void {
  const path = () => arg.string({ maxLength: PATH_MAX, describe: 'absolute, or relative to the guest\u2019s home' });
  registry.register({
    name: 'xenstore-read',
    description: 'read a xenstore node as the toolstack (domain 0)',
    args: { path: path() },
    handler: ({ path }) => ({ value: ops(target).read(path) }),
  });
  registry.register({
    name: 'xenstore-write',
    description: 'write a xenstore node as the toolstack, creating missing parents',
    args: { path: path(), value: arg.string({ maxLength: VALUE_MAX }) },
    handler: ({ path, value }) => ops(target).write(path, value),
  });
  registry.register({
    name: 'xenstore-rm',
    description: 'remove a xenstore node and everything below it',
    args: { path: path() },
    handler: ({ path }) => ops(target).rm(path),
  });
  registry.register({
    name: 'xenstore-ls',
    description: 'a xenstore subtree (default the whole tree): path, value and permissions of every node',
    args: { path: arg.optional(path()) },
    handler: ({ path }) =>
      ops(target)
        .list(path ?? '/')
        .map(entryJson),
  });
  registry.register({
    name: 'xenstore-watch',
    description: `watch a xenstore path: one ${WATCH_EVENT} event per firing (the first at once); ends after count events, or when the client leaves`,
    args: {
      path: path(),
      count: arg.optional(arg.integer({ min: 1, max: 1_000_000 })),
      id: arg.optional(
        arg.string({ maxLength: 64, describe: 'names this watch in its events (default: chosen here)' }),
      ),
    },
    handler: ({ path, count, id }, ctx) => watch(target, path, count, id ?? `watch-${++watchIds}`, ctx.signal),
  });
  for (const reason of ['poweroff', 'reboot'] as const) {
    registry.register({
      name: reason === 'poweroff' ? 'shutdown' : 'reboot',
      description: `ask the guest to ${reason === 'poweroff' ? 'power off' : 'reboot'} (writes "${reason}" to its control/shutdown, which a PV guest watches)`,
      args: {},
      handler: () => {
        if (target.status() === 'shutdown') throw new InputError('the guest has already stopped');
        ops(target).requestShutdown(reason);
      },
    });
  }
}

/** Watches until `count` events came, the client left or the machine stopped; returns the events. */
async function watch(
  target: XenstoreTarget,
  path: string,
  count: number | undefined,
  id: string,
  signal: AbortSignal,
): Promise<JsonObject> {
  const seen: JsonObject[] = [];
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => (done = r));
  const unwatch = ops(target).watch(path, (e) => {
    if (count !== undefined && seen.length >= count) return;
    const ev: JsonObject = { path: e.path, watch: id };
    seen.push(ev);
    target.events()?.emitEvent(WATCH_EVENT, ev);
    if (count !== undefined && seen.length >= count) done();
  });
  const poll = setInterval(() => {
    if (target.status() === 'shutdown') done();
  }, WATCH_POLL_MS);
  signal.addEventListener('abort', done, { once: true });
  try {
    await finished;
  } finally {
    clearInterval(poll);
    signal.removeEventListener('abort', done);
    unwatch();
  }
  return { watch: id, events: seen };
}
let watchIds = 0;
