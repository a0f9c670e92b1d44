// The console's control-socket commands, what `xenkvm console` speaks:
//   console-read  {cursor?, wait-ms?}  -> {data (base64), cursor, lost, ring}
//     the console log after `cursor` (all of it kept without one); with
//     wait-ms, waits up to that long for output when there is none yet, so a
//     client follows the console with one request in flight at a time.
//   console-write {data (base64)}      -> {accepted}
//     queues input for the guest's console ring; `accepted` may be less than
//     sent when the bounded input queue is full (the client sends the rest
//     later).  An error when the guest has no console ring.
// They reach the machine only through ConsoleTarget (docs/architecture.md,
// "How to add a QMP command").
import { InputError } from '../errors.js';
import type { CommandRegistry } from '../qmp/registry.js';
import { arg } from '../qmp/schema.js';
import type { LogRead } from '../xen/console/log.js';

/** Longest wait a console-read may ask for (ms). */
export const MAX_READ_WAIT_MS = 60_000;
/** Largest console-write, in base64 characters (48 KiB of input). */
export const MAX_WRITE_BASE64 = 65_536;

export interface ConsoleTarget {
  /** Whether the guest has a PV console ring (input needs one; output is logged either way). */
  hasRing(): boolean;
  read(cursor: number): LogRead;
  /** Resolves on the next output, after `ms`, or when `signal` aborts. */
  whenOutput(ms: number, signal: AbortSignal): Promise<void>;
  /** Queues input; returns how many bytes were taken. */
  write(bytes: Uint8Array): number;
}

function decodeBase64(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0)
    throw new InputError("Parameter 'data' is not base64");
  return Buffer.from(text, 'base64');
}

export function registerConsoleCommands(registry: CommandRegistry, target: ConsoleTarget): void {
  registry.register({
    name: 'console-read',
    description: 'console output after a cursor (base64); waits up to wait-ms for some',
    args: {
      cursor: arg.optional(arg.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
      'wait-ms': arg.optional(arg.integer({ min: 0, max: MAX_READ_WAIT_MS })),
    },
    handler: async (a, ctx) => {
      const cursor = a.cursor ?? 0;
      let r = target.read(cursor);
      if (r.data.length === 0 && r.lost === 0 && (a['wait-ms'] ?? 0) > 0) {
        await target.whenOutput(a['wait-ms']!, ctx.signal);
        r = target.read(cursor);
      }
      return { data: Buffer.from(r.data).toString('base64'), cursor: r.cursor, lost: r.lost, ring: target.hasRing() };
    },
  });

  registry.register({
    name: 'console-write',
    description: "input for the guest's PV console (base64); answers how many bytes were taken",
    args: { data: arg.string({ maxLength: MAX_WRITE_BASE64 }) },
    handler: ({ data }) => {
      const bytes = decodeBase64(data);
      if (!target.hasRing()) throw new InputError('the guest has no PV console ring (HVM_PARAM_CONSOLE_PFN is 0)');
      return { accepted: target.write(bytes) };
    },
  });
}
