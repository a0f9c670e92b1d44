// `xenkvm console SOCK`: attach to a running guest's console through its
// control socket, as `xl console` and `virsh console` do: print the console
// log the emulator kept (recent output), then follow the output live, and
// send stdin to the guest's PV console.  Ctrl-] detaches on a terminal;
// otherwise it runs until the guest stops (or moves away: the control
// socket closes) or a signal.  Works on any run, restore or receive with
// --qmp, so also on a restored or migrated guest (attach to its new socket).
import { IoError, XenkvmError } from '../errors.js';
import type { QmpClient } from '../qmp/client.js';
import { isJsonObject, type JsonValue } from '../qmp/protocol.js';
import { defineCommand } from './command.js';
import { EXIT } from './exit-codes.js';

export interface ConsoleArgs {
  readonly socket: string;
  /** Print the kept log first (default); false starts with new output. */
  readonly log: boolean;
}

export const command = defineCommand({
  command: 'console <socket>',
  describe: "Attach to a running guest's console through its control socket (Ctrl-] detaches)",
  builder: (y) =>
    y
      .positional('socket', {
        type: 'string',
        demandOption: true,
        describe: 'control socket (run, restore or receive --qmp PATH)',
      })
      .option('log', {
        type: 'boolean',
        default: true,
        describe: 'print the recent output the emulator kept before following (--no-log: only new output)',
      })
      .example('$0 console /tmp/vm.sock', "see the guest's console and type into it")
      .epilogue(
        'On a terminal, keys go to the guest raw (Ctrl-C too); Ctrl-] detaches and leaves the guest running. Piped input is sent as it is. Exit status: 0 detached or the guest stopped, 2 no xenkvm listening at SOCK.',
      ),
  run: (a) => consoleCommand({ socket: a.socket, log: a.log }),
});

/** Poll interval while the guest's input queue is full. */
const FULL_RETRY_MS = 50;
/** Input per console-write (raw bytes; base64 is 4/3 of it, within the command's limit). */
const WRITE_CHUNK = 32 * 1024;

interface ReadAnswer {
  data: Uint8Array;
  cursor: number;
  lost: number;
  ring: boolean;
}

function parseRead(v: JsonValue): ReadAnswer {
  if (!isJsonObject(v) || typeof v['data'] !== 'string' || typeof v['cursor'] !== 'number')
    throw new IoError('the control socket answered console-read with something unexpected');
  return {
    data: Buffer.from(v['data'], 'base64'),
    cursor: v['cursor'],
    lost: typeof v['lost'] === 'number' ? v['lost'] : 0,
    ring: v['ring'] === true,
  };
}

/** Sends input in pieces the command accepts; returns how many bytes the guest's queue took. */
async function sendInput(writer: QmpClient, bytes: Uint8Array): Promise<number> {
  const piece = bytes.subarray(0, WRITE_CHUNK);
  const r = await writer.execute('console-write', { data: Buffer.from(piece).toString('base64') });
  return isJsonObject(r) && typeof r['accepted'] === 'number' ? r['accepted'] : 0;
}

/** Follows the output until the connection ends or `stop` resolves. */
async function follow(reader: QmpClient, first: ReadAnswer, stopped: () => boolean): Promise<void> {
  let cursor = first.cursor;
  while (!stopped()) {
    const r = parseRead(await reader.execute('console-read', { cursor, 'wait-ms': 1000 }, { timeoutMs: 10_000 }));
    if (r.lost > 0) process.stderr.write(`\r\nxenkvm: ${r.lost} bytes of console output were missed\r\n`);
    if (r.data.length > 0) process.stdout.write(r.data);
    cursor = r.cursor;
  }
}

export async function consoleCommand(a: ConsoleArgs): Promise<number> {
  const [{ QmpClient }, { forwardInput, ESCAPE_NAME }] = await Promise.all([
    import('../qmp/client.js'),
    import('./console-input.js'),
  ]);
  const reader = await QmpClient.connect(a.socket);
  let writer: QmpClient | null = null;
  let detached = false;
  const onSignal = (): void => {
    detached = true;
    reader.close();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const first = parseRead(await reader.execute('console-read', a.log ? { cursor: 0 } : { cursor: 2 ** 53 - 1 }));
    if (a.log) process.stdout.write(first.data);
    let input = null;
    if (first.ring) {
      writer = await QmpClient.connect(a.socket);
      const w = writer;
      input = forwardInput({
        write: (bytes) => sendInput(w, bytes),
        whenRoom: () => new Promise((r) => setTimeout(r, FULL_RETRY_MS)),
      });
      if (process.stdin.isTTY) process.stderr.write(`xenkvm: attached to ${a.socket} (${ESCAPE_NAME} detaches)\r\n`);
      void input.ended.then((why) => {
        if (why !== 'escape') return;
        detached = true;
        reader.close();
      });
    } else {
      process.stderr.write('xenkvm: the guest has no PV console ring: showing its output only\n');
    }
    try {
      await follow(reader, first, () => detached);
    } catch (e) {
      if (!(e instanceof XenkvmError)) throw e;
      if (!detached) process.stderr.write(`\r\nxenkvm: ${a.socket} closed: the guest stopped or moved\r\n`);
    } finally {
      input?.stop();
    }
    return EXIT.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    reader.close();
    writer?.close();
  }
}
