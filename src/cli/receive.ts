// `xenkvm receive --listen ADDR`: waits for one incoming live migration,
// then runs the guest here like `xenkvm run` (console on stdout, --qmp for
// control).  With `--listen -` the stream comes on stdin and the answer to
// the source goes to stdout, so the guest console goes to stderr instead
// (`ssh host xenkvm receive --listen -`).  With --tls-cert/--tls-key (and
// --tls-ca to require a client certificate) or --psk-file the stream is TLS
// (see migrate/live/transport/security.ts); without, it is not authenticated:
// listen only where no one but the source can connect.  The protocol is
// migrate/live/receive.ts's; this parses, wires and prints.
import type { MigrationAddress } from '../migrate/live/transport/address.js';
import type { StreamSecurity } from '../migrate/live/transport/security.js';
import type { IncomingConnection, IncomingMigration } from '../migrate/live/receive.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

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

export const command = defineCommand({
  command: 'receive',
  describe: 'Wait for one incoming live migration and run the guest (console on stdout; on stderr with --listen -)',
  builder: (y) =>
    y
      .option('listen', {
        type: 'string',
        demandOption: true,
        describe: 'tcp:HOST:PORT, unix:PATH, or - (stream on stdin, answer on stdout)',
      })
      .option('qmp', { type: 'string', describe: 'open a QMP control socket at this path once the guest runs' })
      .option('quiet', {
        type: 'boolean',
        default: false,
        describe: 'no closing status line on a clean shutdown',
      })
      .option('tls-cert', { type: 'string', describe: "TLS: this destination's certificate (PEM)" })
      .option('tls-key', { type: 'string', describe: 'TLS: its private key (PEM)' })
      .option('tls-ca', { type: 'string', describe: 'TLS: require a source certificate signed by this CA (PEM)' })
      .option('psk-file', {
        type: 'string',
        describe:
          'TLS 1.2 with a pre-shared key instead of certificates: file with the key in hex (openssl rand -hex 32)',
      })
      .example('$0 receive --listen tcp:0.0.0.0:4444 --qmp /tmp/vm.sock', 'accept one guest on port 4444')
      .example('$0 receive --listen tcp:0.0.0.0:4444 --tls-cert dest.pem --tls-key dest.key', 'the same over TLS')
      .epilogue(
        'Without --tls-cert/--tls-key or --psk-file the stream is NOT authenticated or encrypted: listen only where just the source can connect. TLS is for tcp: and unix: addresses.\n\nExit status as for run; 1 when the migration failed (nothing runs here), 130 interrupted.',
      ),
  run: (a) =>
    receiveCommand({
      listen: a.listen,
      qmp: a.qmp,
      quiet: a.quiet,
      tlsCert: a['tls-cert'],
      tlsKey: a['tls-key'],
      tlsCa: a['tls-ca'],
      pskFile: a['psk-file'],
    }),
});

/** What receiving needs, loaded when the command runs (command.ts). */
const load = () =>
  Promise.all([
    import('../migrate/live/transport/address.js'),
    import('../migrate/live/transport/security.js'),
    import('../migrate/live/receive.js'),
    import('../machine/thread-pool.js'),
    import('./run-to-completion.js'),
  ]).then(([address, security, receive, threads, run]) => ({
    ...address,
    ...security,
    ...receive,
    ...threads,
    ...run,
  }));
type Loaded = Awaited<ReturnType<typeof load>>;

const say = (line: string): void => {
  process.stderr.write(`xenkvm: ${line}\n`);
};

type Source = { conn: IncomingConnection; from: string };

/**
 * Where sources come from: stdin once, or a listener that hands out one
 * connection at a time (null when interrupted first) until it is closed.
 */
async function sourcesFrom(
  lib: Loaded,
  addr: MigrationAddress,
  security: StreamSecurity,
  signal: AbortSignal,
): Promise<{ next(): Promise<Source | null>; close(): void; again: boolean }> {
  if (addr.kind === 'stdio') {
    let given = false;
    return {
      again: false,
      close: () => {},
      next: async () => {
        if (given) return null;
        given = true;
        return { conn: { input: process.stdin, output: process.stdout, endOutput: false }, from: 'stdin' };
      },
    };
  }
  const listener = await lib.listenOn(addr, security, (why) => say(why));
  say(
    `waiting for a guest on ${lib.formatAddress(listener.address)}${security.kind === 'none' ? '' : ` (${lib.describeSecurity(security)})`}`,
  );
  return {
    again: true,
    close: () => listener.close(),
    next: async () => {
      let sock;
      try {
        sock = await listener.accept(signal);
      } catch (e) {
        if (signal.aborted) return null;
        throw e;
      }
      const from = `${sock.remoteAddress ?? 'a local peer'}${sock.remotePort ? `:${sock.remotePort}` : ''}`;
      return { conn: lib.socketConnection(sock, security.kind === 'none', signal), from };
    },
  };
}

export async function receiveCommand(a: ReceiveArgs): Promise<number> {
  const lib = await load();
  const addr = lib.parseAddress(a.listen, '--listen');
  const security = lib.loadSecurity(
    { tlsCert: a.tlsCert, tlsKey: a.tlsKey, tlsCa: a.tlsCa, pskFile: a.pskFile },
    'server',
  );
  lib.checkSecurityFor(addr, security, '--listen');
  // While we wait for the source: the guest's threads load (most guests have 1-2 vCPUs; more start on demand).
  lib.prestartThreads(2);
  const stdio = addr.kind === 'stdio';
  const consoleOut = stdio ? process.stderr : process.stdout;
  const interrupted = new AbortController();
  const onSignal = (): void => interrupted.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const sources = await sourcesFrom(lib, addr, security, interrupted.signal);
  try {
    let source: Source | null;
    let r: IncomingMigration | null = null;
    // A connection that fails before a guest is here (a scan, garbage, a sender
    // that stalls) is reported, and the listener waits on for a proper one.
    while (r === null) {
      source = await sources.next();
      if (!source) {
        say('interrupted: no guest received');
        return EXIT.interrupted;
      }
      r = await receiveOne(lib, source, interrupted.signal, consoleOut);
      if (r === null && (interrupted.signal.aborted || !sources.again))
        return interrupted.signal.aborted ? EXIT.interrupted : EXIT.crash;
      if (r === null) say('waiting for another connection');
    }
    sources.close();
    say(`received ${(r.stats.bytes / (1 << 20)).toFixed(1)} MiB in ${r.stats.ms.toFixed(0)} ms; starting the guest`);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // runToCompletion starts the guest; the source hears "OK running" right after, and only then stops its copy.
    // With --listen - stdin carried the stream: it is not the console's.
    return await lib.runToCompletion(r.machine, a.quiet, a.qmp, r.confirm, !stdio);
  } finally {
    sources.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** One migration from `source`: the machine, or null when it failed (said on stderr; the source was told). */
async function receiveOne(
  lib: Loaded,
  source: Source,
  signal: AbortSignal,
  consoleOut: NodeJS.WritableStream,
): Promise<IncomingMigration | null> {
  try {
    return await lib.receiveMigration(source.conn, {
      console: (bytes) => consoleOut.write(bytes),
      log: (msg) => say(msg),
      onHeader: (h) =>
        say(
          `receiving a guest from ${source.from} (${h.producer}, ${h.memBytes / (1 << 20)} MiB, ${h.vcpus} vCPU${h.vcpus === 1 ? '' : 's'})`,
        ),
      signal,
      onConfirmed: () => say(`guest running (migrated from ${source.from})`),
    });
  } catch (e) {
    say(`migration from ${source.from} failed: ${(e as Error).message}; nothing runs here`);
    return null;
  }
}
