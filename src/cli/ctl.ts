// `xenkvm ctl SOCK <command> [json-args]`: send one command to a running
// xenkvm's control socket and print the answer.  People get a table or a line
// for the commands that have a natural one, JSON otherwise; --json always
// prints the raw `return` value.  Exit status: 0 the command succeeded, 1 the
// server answered with an error, 2 bad usage or no server to talk to.

import { QmpError, XenkvmError } from '../errors.js';
import type { QmpClient } from '../qmp/client.js';
import { isJsonObject, type JsonObject, type JsonValue, type QmpEvent } from '../qmp/protocol.js';
import { treeLines } from '../xen/xenstore/tree-text.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

export const CTL_EXIT = { ok: EXIT.ok, commandFailed: 1, usage: EXIT.usage } as const;

export interface CtlArgs {
  readonly socket: string;
  readonly command: string;
  /** The command's arguments as a JSON object, e.g. '{"port": 3}'. */
  readonly json?: string;
  /** Or as words, for the commands that name theirs (WORD_ARGS): `xenstore-write PATH VALUE`. */
  readonly words?: readonly string[];
  /** Print the raw JSON `return` value instead of the human form. */
  readonly raw?: boolean;
  /** How long to wait for the answer; default 30 s. */
  readonly timeoutMs?: number;
  /** Where output goes; default the process's stdout/stderr (tests pass their own). */
  readonly out?: (text: string) => void;
  readonly err?: (text: string) => void;
}

export const command = defineCommand({
  command: 'ctl <socket> <cmd> [args..]',
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
        describe:
          'query-status, stop, cont, quit, xen-event-list, xen-event-inject, xenstore-read, xenstore-write, xenstore-ls, xenstore-rm, xenstore-watch, shutdown, reboot, query-commands',
      })
      .positional('args', {
        type: 'string',
        array: true,
        describe:
          'command arguments as a JSON object, e.g. \'{"port": 3}\', or as words for xenstore-* (PATH [VALUE|COUNT])',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON result' })
      .example('$0 ctl /tmp/vm.sock xen-event-list', 'show every event channel of the running guest')
      .example('$0 ctl /tmp/vm.sock xen-event-inject \'{"port": 3}\'', 'make port 3 pending')
      .example('$0 ctl /tmp/vm.sock xenstore-write data/greeting hello', "write below the guest's xenstore home")
      .example('$0 ctl /tmp/vm.sock xenstore-watch control 3', 'print the first 3 firings of a watch')
      .example('$0 ctl /tmp/vm.sock shutdown', 'ask the guest to power off (control/shutdown)')
      .epilogue('Exit status: 0 success, 1 the command failed, 2 bad usage or no xenkvm listening.'),
  run: (a) => ctlCommand({ socket: a.socket, command: a.cmd, words: a.args ?? [], raw: a.json }),
});

/**
 * Commands that take their arguments as words, like Xen's xenstore-* tools:
 * the argument names in order (`?` marks an optional one, `#` an integer).
 */
const WORD_ARGS: ReadonlyMap<string, readonly string[]> = new Map([
  ['xenstore-read', ['path']],
  ['xenstore-write', ['path', 'value']],
  ['xenstore-rm', ['path']],
  ['xenstore-ls', ['path?']],
  ['xenstore-watch', ['path', 'count?#']],
  ['xen-event-inject', ['port#']],
]);

/** Human forms by command name; a formatter returns null for a shape it does not know. */
const PRETTY: ReadonlyMap<string, (v: JsonValue) => string | null> = new Map([
  ['query-status', formatStatus],
  ['xen-event-list', formatEventList],
  ['xenstore-read', (v) => (isJsonObject(v) && typeof v['value'] === 'string' ? v['value'] : null)],
  ['xenstore-ls', formatTree],
  // Commands that only act say nothing when they succeed, as Xen's tools do.
  ...['xenstore-write', 'xenstore-rm', 'shutdown', 'reboot'].map((c) => [c, () => ''] as const),
]);

export async function ctlCommand(args: CtlArgs): Promise<number> {
  // Loaded when the command runs (command.ts).
  const { QmpClient } = await import('../qmp/client.js');
  const out = args.out ?? ((t: string) => void process.stdout.write(t));
  const err = args.err ?? ((t: string) => void process.stderr.write(t));
  let commandArgs: JsonObject | undefined;
  try {
    commandArgs = commandArguments(args);
  } catch (e) {
    err(`xenkvm: ${(e as Error).message}\n`);
    return CTL_EXIT.usage;
  }
  let client: QmpClient | undefined;
  const watching = args.command === 'xenstore-watch';
  if (watching) commandArgs = { id: `ctl-${process.pid}-${Date.now()}`, ...commandArgs };
  try {
    client = await QmpClient.connect(args.socket, {
      // A watch lasts as long as it is asked to.
      commandTimeoutMs: args.timeoutMs ?? (watching ? 0 : 30_000),
      ...(watching && { onEvent: (e) => printWatchEvent(e, commandArgs!['id'], args.raw ?? false, out) }),
    });
    const result = await client.execute(args.command, commandArgs);
    const text = watching ? '' : render(args.command, result, args.raw ?? false);
    if (text !== '') out(`${text}\n`);
    return CTL_EXIT.ok;
  } catch (e) {
    if (!(e instanceof XenkvmError)) throw e;
    err(`xenkvm: ${e instanceof QmpError ? `${args.command}: ` : ''}${e.message}\n`);
    return e instanceof QmpError ? CTL_EXIT.commandFailed : CTL_EXIT.usage;
  } finally {
    client?.close();
  }
}

/** The command's arguments: one JSON object, or words named by WORD_ARGS. */
function commandArguments(args: CtlArgs): JsonObject | undefined {
  const words = args.words ?? [];
  if (args.json !== undefined) return parseArgs(args.json);
  if (words.length === 0) return undefined;
  if (words.length === 1 && words[0]!.trim().startsWith('{')) return parseArgs(words[0]);
  const names = WORD_ARGS.get(args.command);
  if (!names) throw new Error(`${args.command} takes its arguments as one JSON object, e.g. '{"port": 3}'`);
  const usage = `${args.command} ${names.map((n) => (n.includes('?') ? `[${bare(n)}]` : bare(n).toUpperCase())).join(' ')}`;
  const need = names.filter((n) => !n.includes('?')).length;
  if (words.length < need || words.length > names.length) throw new Error(`usage: ${usage}`);
  const out: JsonObject = {};
  words.forEach((w, i) => {
    const name = names[i]!;
    if (!name.includes('#')) out[bare(name)] = w;
    else if (/^\d+$/.test(w)) out[bare(name)] = Number(w);
    else throw new Error(`${bare(name)} must be a number, got ${JSON.stringify(w)} (usage: ${usage})`);
  });
  return out;
}

const bare = (name: string): string => name.replace(/[?#]/g, '');

/** One line per firing of our own watch (others' watches send events to every client). */
function printWatchEvent(e: QmpEvent, id: JsonValue | undefined, raw: boolean, out: (t: string) => void): void {
  if (e.event !== 'XENSTORE_WATCH' || !isJsonObject(e.data) || e.data['watch'] !== id) return;
  out(`${raw ? JSON.stringify(e.data) : String(e.data['path'])}\n`);
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

/** `xenstore-ls`: `path = "value"`, permissions where not inherited. */
function formatTree(v: JsonValue): string | null {
  if (!Array.isArray(v)) return null;
  const nodes = v.filter(isJsonObject).map((n) => ({
    path: String(n['path']),
    value: String(n['value']),
    perms: Array.isArray(n['perms']) ? n['perms'].map(String) : [],
  }));
  return treeLines(nodes).join('\n');
}
