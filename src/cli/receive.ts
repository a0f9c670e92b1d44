// `xenkvm receive --listen ADDR`: waits for one incoming live migration,
// then runs the guest here like `xenkvm run` (console on stdout, --qmp for
// control).  With `--listen -` the stream comes on stdin and the answer to
// the source goes to stdout, so the guest console goes to stderr instead
// (`ssh host xenkvm receive --listen -`).  With --tls-cert/--tls-key (and
// --tls-ca to require a client certificate) or --psk-file the stream is TLS
// (see migrate/live/transport/security.ts); without, it is not authenticated: listen
// only where no one but the source can connect.
import { checkSecurityFor, formatAddress, listenOn, parseAddress } from '../migrate/live/transport/address.js';
import { describeSecurity, loadSecurity } from '../migrate/live/transport/security.js';
import { confirmRunning, receiveMachine, refuse, sendAck } from '../migrate/live/receive.js';
import type { Readable, Writable } from 'node:stream';
import { EXIT } from './exit-codes.js';
import { socketSource } from '../migrate/stream/socket-byte-source.js';
import type { ByteSource } from '../migrate/stream/byte-source.js';
import { prestartThreads } from '../machine/thread-pool.js';
import { runToCompletion } from './run.js';
import { flushTrace, mark } from '../trace.js';
import { realtimeWindow } from '../migrate/live/pause/realtime.js';
import type { XenMachine } from '../machine/machine.js';

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

/** How long the destination holds back its own start-up work for the source to hang up. */
const SOURCE_GONE_WAIT_MS = 500;

/** Resolves when the peer of `conn` has ended or closed it, or after `ms`. */
function sourceGone(conn: Writable, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      conn.off('end', done);
      conn.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    conn.on('end', done);
    conn.on('close', done);
    if (conn.destroyed || (conn as { readableEnded?: boolean }).readableEnded === true) done();
  });
}

export async function receiveCommand(a: ReceiveArgs): Promise<number> {
  const addr = parseAddress(a.listen, '--listen');
  const security = loadSecurity({ tlsCert: a.tlsCert, tlsKey: a.tlsKey, tlsCa: a.tlsCa, pskFile: a.pskFile }, 'server');
  checkSecurityFor(addr, security, '--listen');
  const say = (line: string): void => {
    process.stderr.write(`xenkvm: ${line}\n`);
  };
  // While we wait for the source: the guest's threads load (most guests have 1-2 vCPUs; more start on demand).
  prestartThreads(2);
  const stdio = addr.kind === 'stdio';
  const consoleOut = stdio ? process.stderr : process.stdout;
  const interrupted = new AbortController();
  const onSignal = (): void => interrupted.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let input: Readable | ByteSource;
  let output: Writable;
  let from: string;
  try {
    if (stdio) {
      input = process.stdin;
      output = process.stdout;
      from = 'stdin';
    } else {
      const listener = await listenOn(addr, security, (why) => say(why));
      say(
        `waiting for a guest on ${formatAddress(listener.address)}${security.kind === 'none' ? '' : ` (${describeSecurity(security)})`}`,
      );
      let sock;
      try {
        sock = await listener.accept(interrupted.signal);
      } catch (e) {
        if (interrupted.signal.aborted) {
          say('interrupted: no guest received');
          return EXIT.interrupted;
        }
        throw e;
      }
      from = `${sock.remoteAddress ?? 'a local peer'}${sock.remotePort ? `:${sock.remotePort}` : ''}`;
      // Plain sockets are read by the kernel straight into a ring (socket-byte-source.ts); TLS as a stream.
      const direct = security.kind === 'none' ? socketSource(sock) : null;
      const conn = direct ? direct.socket : sock;
      input = direct ? direct.source : sock;
      output = conn;
      interrupted.signal.addEventListener('abort', () => conn.destroy(new Error('interrupted')), { once: true });
    }
    let machine;
    let restoredIn = 0;
    /** Set at the first ACK: ends the real-time window (realtime.ts). */
    let leaveRealtime = null as (() => void) | null;
    let incoming: XenMachine | null = null;
    try {
      const r = await receiveMachine(input, {
        console: (bytes) => consoleOut.write(bytes),
        log: (msg) => say(msg),
        onMachine: (im) => {
          incoming = im;
        },
        // From the first round's end until the answer is out: the pause comes after one of these (realtime.ts).
        ack: (seq) => {
          sendAck(output, seq);
          leaveRealtime ??= realtimeWindow(incoming?.pauseThreadIds() ?? []);
        },
        onHeader: (h) =>
          say(
            `receiving a guest from ${from} (${h.producer}, ${h.memBytes / (1 << 20)} MiB, ${h.vcpus} vCPU${h.vcpus === 1 ? '' : 's'})`,
          ),
      });
      machine = r.machine;
      mark('received');
      restoredIn = r.stats.restoreMs;
      if (interrupted.signal.aborted) {
        await machine.destroy();
        throw new Error('interrupted');
      }
      say(`received ${(r.stats.bytes / (1 << 20)).toFixed(1)} MiB in ${r.stats.ms.toFixed(0)} ms; starting the guest`);
    } catch (e) {
      leaveRealtime?.();
      const msg = interrupted.signal.aborted
        ? 'interrupted on the destination'
        : e instanceof Error
          ? e.message
          : String(e);
      await refuse(output, msg);
      if (!stdio) (output as Writable).end();
      say(`migration failed: ${msg}; nothing runs here`);
      return interrupted.signal.aborted ? EXIT.interrupted : EXIT.crash;
    }
    // runToCompletion starts the guest; the source hears "OK running" right after, and
    // only then stops its copy.  If the answer cannot be handed over, the source resumes
    // its guest, so this copy must not run on.
    const m = machine;
    const restoreMs = restoredIn;
    const confirm = (): Promise<void> => {
      const t = performance.now();
      mark('confirm');
      return m
        .whenRunning()
        .then(() => {
          const runningAt = performance.now();
          mark('running');
          const p = confirmRunning(output, {
            restoreMs,
            startMs: runningAt - t,
            answerMs: performance.now() - runningAt,
          });
          mark('okWrite');
          return p;
        })
        .then(
          async () => {
            mark('okWritten');
            leaveRealtime?.();
            if (!stdio) {
              output.end();
              // The source stops its copy once it has read the answer; until it hangs up, leave
              // the CPU to it: opening the control socket next (loading and compiling its
              // modules) took cycles from the source exactly while it waited for them.
              await sourceGone(output, SOURCE_GONE_WAIT_MS);
            }
            flushTrace('destination');
            say(`guest running (migrated from ${from})`);
          },
          (e: Error) => {
            leaveRealtime?.();
            m.requestStop({
              kind: 'fault',
              detail: `the source did not get the confirmation (${e.message}); it keeps the guest, this copy is discarded`,
            });
          },
        );
    };
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    return await runToCompletion(m, a.quiet, a.qmp, confirm);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
