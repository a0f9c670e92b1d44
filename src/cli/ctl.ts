// `xenkvm ctl SOCK <command> [json-args]`: send one command to a running
// xenkvm's control socket and print the answer.  People get a table or a line
// for the commands that have a natural one, JSON otherwise; --json always
// prints the raw `return` value.  Exit status: 0 the command succeeded, 1 the
// server answered with an error, 2 bad usage or no server to talk to.

import { QmpError, XenkvmError } from '../errors.js';
import type { QmpClient } from '../qmp/client.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../qmp/protocol.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

export const CTL_EXIT = { ok: EXIT.ok, commandFailed: 1, usage: EXIT.usage } as const;

export interface CtlArgs {
  readonly socket: string;
  readonly command: string;
  /** The command's arguments as a JSON object, e.g. '{"port": 3}'. */
  readonly json?: string;
  /** Print the raw JSON `return` value instead of the human form. */
  readonly raw?: boolean;
  /** How long to wait for the answer; default 30 s. */
  readonly timeoutMs?: number;
  /** Where output goes; default the process's stdout/stderr (tests pass their own). */
  readonly out?: (text: string) => void;
  readonly err?: (text: string) => void;
}

export const command = defineCommand({
  command: 'ctl <socket> <cmd> [args]',
  describe: "Send one command to a running xenkvm's control socket and print the answer",
  builder: (y) =>
    y
      .positional('socket', {
        type: 'string',
        demandOption: true,
        describe: 'control socket (xenkvm run --qmp PATH)',
      })
      .positional('cmd', {
        type: 'string',
        demandOption: true,
        describe: 'query-status, stop, cont, quit, xen-event-list, xen-event-inject, query-commands',
      })
      .positional('args', {
        type: 'string',
        describe: 'command arguments as a JSON object, e.g. \'{"port": 3}\'',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON result' })
      .example('$0 ctl /tmp/vm.sock xen-event-list', 'show every event channel of the running guest')
      .example('$0 ctl /tmp/vm.sock xen-event-inject \'{"port": 3}\'', 'make port 3 pending')
      .epilogue('Exit status: 0 success, 1 the command failed, 2 bad usage or no xenkvm listening.'),
  run: (a) => ctlCommand({ socket: a.socket, command: a.cmd, json: a.args, raw: a.json }),
});

/** Human forms by command name; a formatter returns null for a shape it does not know. */
const PRETTY: ReadonlyMap<string, (v: JsonValue) => string | null> = new Map([
  ['query-status', formatStatus],
  ['xen-event-list', formatEventList],
]);

export async function ctlCommand(args: CtlArgs): Promise<number> {
  // Loaded when the command runs (command.ts).
  const { QmpClient } = await import('../qmp/client.js');
  const out = args.out ?? ((t: string) => void process.stdout.write(t));
  const err = args.err ?? ((t: string) => void process.stderr.write(t));
  let commandArgs: JsonObject | undefined;
  try {
    commandArgs = parseArgs(args.json);
  } catch (e) {
    err(`xenkvm: ${(e as Error).message}\n`);
    return CTL_EXIT.usage;
  }
  let client: QmpClient | undefined;
  try {
    client = await QmpClient.connect(args.socket, { commandTimeoutMs: args.timeoutMs ?? 30_000 });
    const result = await client.execute(args.command, commandArgs);
    out(`${render(args.command, result, args.raw ?? false)}\n`);
    return CTL_EXIT.ok;
  } catch (e) {
    if (!(e instanceof XenkvmError)) throw e;
    err(`xenkvm: ${e instanceof QmpError ? `${args.command}: ` : ''}${e.message}\n`);
    return e instanceof QmpError ? CTL_EXIT.commandFailed : CTL_EXIT.usage;
  } finally {
    client?.close();
  }
}

function parseArgs(json: string | undefined): JsonObject | undefined {
  if (json === undefined || json.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new Error(`command arguments are not valid JSON: ${(e as Error).message}`);
  }
  if (!isJsonObject(value)) throw new Error('command arguments must be a JSON object, e.g. \'{"port": 3}\'');
  return value;
}

function render(command: string, result: JsonValue, raw: boolean): string {
  if (!raw) {
    const pretty = PRETTY.get(command)?.(result);
    if (pretty != null) return pretty;
  }
  return raw ? JSON.stringify(result) : JSON.stringify(result, null, 2);
}

function formatStatus(v: JsonValue): string | null {
  return isJsonObject(v) && typeof v['status'] === 'string' ? `VM status: ${v['status']}` : null;
}

const EVENT_COLUMNS = ['PORT', 'TYPE', 'VCPU', 'BINDING', 'PENDING', 'MASKED'] as const;

/** An aligned table, one row per port, numbers right-aligned. */
function formatEventList(v: JsonValue): string | null {
  if (!Array.isArray(v) || !v.every(isJsonObject)) return null;
  if (v.length === 0) return 'no event channel ports are open';
  const rows = v.map((p) => [
    String(p['port']),
    String(p['type']),
    String(p['vcpu']),
    binding(p),
    p['pending'] ? 'yes' : 'no',
    p['masked'] ? 'yes' : 'no',
  ]);
  const widths = EVENT_COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = new Set([0, 2]);
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(EVENT_COLUMNS), ...rows.map(line)].join('\n');
}

function binding(p: JsonObject): string {
  if (typeof p['virq-name'] === 'string') return `${p['virq-name']} (${String(p['virq'])})`;
  if (p['remote-port'] !== undefined) return `dom ${String(p['remote-domain'])} port ${String(p['remote-port'])}`;
  if (p['remote-domain'] !== undefined) return `dom ${String(p['remote-domain'])}`;
  if (p['pirq'] !== undefined) return `pirq ${String(p['pirq'])}`;
  return '-';
}
