// `xenkvm receive --listen ADDR`: waits for one incoming live migration,
// then runs the guest here like `xenkvm run` (console on stdout, --qmp for
// control).  With `--listen -` the stream comes on stdin and the answer to
// the source goes to stdout, so the guest console goes to stderr instead
// (`ssh host xenkvm receive --listen -`).  With --tls-cert/--tls-key (and
// --tls-ca to require a client certificate) or --psk-file the stream is TLS
// (see migrate/live/transport/security.ts); without, it is not authenticated:
// listen only where no one but the source can connect.  The protocol is
// migrate/live/receive.ts's; this parses, wires and prints.
import {
  type MigrationAddress,
  checkSecurityFor,
  formatAddress,
  listenOn,
  parseAddress,
} from '../migrate/live/transport/address.js';
import { describeSecurity, loadSecurity, type StreamSecurity } from '../migrate/live/transport/security.js';
import {
  type IncomingConnection,
  type IncomingMigration,
  receiveMigration,
  socketConnection,
} from '../migrate/live/receive.js';
import { EXIT } from './exit-codes.js';
import { prestartThreads } from '../machine/thread-pool.js';
import { runToCompletion } from './run.js';

export interface ReceiveArgs {
  listen: string;
  qmp?: string | undefined;
  quiet: boolean;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** Require a client certificate signed by this CA. */
  tlsCa?: string | undefined;
  pskFile?: string | undefined;
}

const say = (line: string): void => {
  process.stderr.write(`xenkvm: ${line}\n`);
};

/** Listens on `addr` for the source; null when interrupted first. */
async function acceptSource(
  addr: MigrationAddress,
  security: StreamSecurity,
  signal: AbortSignal,
): Promise<{ conn: IncomingConnection; from: string } | null> {
  const listener = await listenOn(addr, security, (why) => say(why));
  say(
    `waiting for a guest on ${formatAddress(listener.address)}${security.kind === 'none' ? '' : ` (${describeSecurity(security)})`}`,
  );
  let sock;
  try {
    sock = await listener.accept(signal);
  } catch (e) {
    if (signal.aborted) return null;
    throw e;
  }
  const from = `${sock.remoteAddress ?? 'a local peer'}${sock.remotePort ? `:${sock.remotePort}` : ''}`;
  return { conn: socketConnection(sock, security.kind === 'none', signal), from };
}

export async function receiveCommand(a: ReceiveArgs): Promise<number> {
  const addr = parseAddress(a.listen, '--listen');
  const security = loadSecurity({ tlsCert: a.tlsCert, tlsKey: a.tlsKey, tlsCa: a.tlsCa, pskFile: a.pskFile }, 'server');
  checkSecurityFor(addr, security, '--listen');
  // While we wait for the source: the guest's threads load (most guests have 1-2 vCPUs; more start on demand).
  prestartThreads(2);
  const stdio = addr.kind === 'stdio';
  const consoleOut = stdio ? process.stderr : process.stdout;
  const interrupted = new AbortController();
  const onSignal = (): void => interrupted.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const source = stdio
      ? { conn: { input: process.stdin, output: process.stdout, endOutput: false }, from: 'stdin' }
      : await acceptSource(addr, security, interrupted.signal);
    if (!source) {
      say('interrupted: no guest received');
      return EXIT.interrupted;
    }
    let r: IncomingMigration;
    try {
      r = await receiveMigration(source.conn, {
        console: (bytes) => consoleOut.write(bytes),
        log: (msg) => say(msg),
        onHeader: (h) =>
          say(
            `receiving a guest from ${source.from} (${h.producer}, ${h.memBytes / (1 << 20)} MiB, ${h.vcpus} vCPU${h.vcpus === 1 ? '' : 's'})`,
          ),
        signal: interrupted.signal,
        onConfirmed: () => say(`guest running (migrated from ${source.from})`),
      });
    } catch (e) {
      say(`migration failed: ${(e as Error).message}; nothing runs here`);
      return interrupted.signal.aborted ? EXIT.interrupted : EXIT.crash;
    }
    say(`received ${(r.stats.bytes / (1 << 20)).toFixed(1)} MiB in ${r.stats.ms.toFixed(0)} ms; starting the guest`);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // runToCompletion starts the guest; the source hears "OK running" right after, and only then stops its copy.
    return await runToCompletion(r.machine, a.quiet, a.qmp, r.confirm);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
