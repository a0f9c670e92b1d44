// `xenkvm migrate --qmp SOCK --to ADDR`: asks a running xenkvm to live-migrate
// its guest to a listening `xenkvm receive` (the process that owns the
// machine sends the stream).  On a TTY a live line per round; --json prints
// the final report.  Ctrl-C cancels (migrate-cancel) while the final state is
// not yet sent; the guest then runs on where it was.
//
// `--to -` relays: the stream goes to this command's stdout and the
// destination's answer is read from its stdin, e.g.
//   socat EXEC:'xenkvm migrate --qmp vm.sock --to -' EXEC:'ssh host xenkvm receive --listen -'
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { XenkvmError } from '../errors.js';
import type { JsonObject } from '../qmp/protocol.js';
import type { Listener } from '../migrate/live/transport/address.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

export interface MigrateArgs {
  qmp: string;
  to: string;
  downtimeMs?: number | undefined;
  maxRounds?: number | undefined;
  timeoutMs?: number | undefined;
  onTimeout: 'pause' | 'cancel';
  json: boolean;
  /** TLS: the CA that signed the destination's certificate; cert/key for mutual authentication. */
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** TLS 1.2 with a pre-shared key (hex in the file), instead of certificates. */
  pskFile?: string | undefined;
}

export const command = defineCommand({
  command: 'migrate',
  describe: 'Live-migrate a running guest to a listening xenkvm receive (through its control socket)',
  builder: (y) =>
    y
      .option('qmp', { type: 'string', demandOption: true, describe: 'control socket of the running xenkvm' })
      .option('to', {
        type: 'string',
        demandOption: true,
        describe: 'tcp:HOST:PORT, unix:PATH, or - (stream to stdout, answer from stdin)',
      })
      .option('downtime-ms', { type: 'number', describe: 'target pause (default 300)' })
      .option('max-rounds', {
        type: 'number',
        describe: 'pre-copy rounds before giving up on convergence (default 30)',
      })
      .option('timeout-ms', { type: 'number', describe: 'limit on the pre-copy phase (default 60000)' })
      .option('on-timeout', {
        choices: ['pause', 'cancel'] as const,
        default: 'pause' as const,
        describe: 'not converged: pause anyway, or cancel and keep running here',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print the final report as JSON' })
      .option('tls-ca', {
        type: 'string',
        describe: "TLS: verify the destination's certificate against this CA (PEM); over tcp: it must name HOST",
      })
      .option('tls-cert', {
        type: 'string',
        describe: 'TLS: client certificate (PEM), for a destination started with --tls-ca',
      })
      .option('tls-key', { type: 'string', describe: 'TLS: its private key (PEM)' })
      .option('psk-file', {
        type: 'string',
        describe: 'TLS 1.2 with a pre-shared key instead of certificates: file with the key in hex',
      })
      .example('$0 migrate --qmp /tmp/vm.sock --to tcp:10.0.0.2:4444', 'send the guest; this xenkvm then exits 0')
      .example('$0 migrate --qmp /tmp/vm.sock --to tcp:dest.example:4444 --tls-ca ca.pem', 'the same over TLS')
      .epilogue(
        'Ctrl-C cancels before the final state is sent. Exit status: 0 migrated, 1 failed (the guest runs on here), 2 bad usage, 130 cancelled.',
      ),
  run: (a) =>
    migrateCommand({
      qmp: a.qmp,
      to: a.to,
      downtimeMs: a['downtime-ms'],
      maxRounds: a['max-rounds'],
      timeoutMs: a['timeout-ms'],
      onTimeout: a['on-timeout'],
      json: a.json,
      tlsCa: a['tls-ca'],
      tlsCert: a['tls-cert'],
      tlsKey: a['tls-key'],
      pskFile: a['psk-file'],
    }),
});

/** What migrating needs, loaded when the command runs (command.ts). */
const load = () =>
  Promise.all([
    import('../qmp/client.js'),
    import('../migrate/live/transport/address.js'),
    import('../migrate/live/transport/security.js'),
    import('../migrate/live/qmp-commands.js'),
  ]).then(([client, address, security, commands]) => ({ ...client, ...address, ...security, ...commands }));
type Loaded = Awaited<ReturnType<typeof load>>;

const mib = (n: number): string => (n / (1 << 20)).toFixed(1);

/** `--to -`: a private unix socket the VMM connects to, piped to stdout and from stdin. */
async function relayStdio(lib: Loaded): Promise<{ uri: string; listener: Listener; done: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-migrate-'));
  const path = join(dir, 'relay.sock');
  const listener = await lib.listenOn({ kind: 'unix', path });
  void listener.accept().then(
    (sock) => {
      sock.pipe(process.stdout);
      process.stdin.pipe(sock);
    },
    () => {},
  );
  return {
    uri: `unix:${path}`,
    listener,
    done: () => {
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The live line for one MIGRATION_PROGRESS event. */
function progressLine(data: unknown): string {
  const p = data as {
    round?: number;
    final?: boolean;
    sentBytes?: number;
    dirtyPages?: number;
    mbps?: number;
    dirtyMiBs?: number;
    expectedDowntimeMs?: number;
  };
  const what = p.final ? 'final (paused)' : `round ${p.round}`;
  return (
    `\r\x1b[Kmigrate ${what}: ${mib(Number(p.sentBytes ?? 0))} MiB sent, ${p.dirtyPages ?? 0} pages, dirty ${Number(p.dirtyMiBs ?? 0).toFixed(0)} MiB/s, ` +
    `${Number(p.mbps ?? 0).toFixed(0)} MiB/s, expected downtime ${Number(p.expectedDowntimeMs ?? 0).toFixed(0)} ms`
  );
}

/** The QMP `migrate` command's arguments. */
function migrateArguments(a: MigrateArgs, uri: string): JsonObject {
  const args: JsonObject = { uri, 'on-timeout': a.onTimeout };
  if (a.downtimeMs !== undefined) args['downtime-ms'] = a.downtimeMs;
  if (a.maxRounds !== undefined) args['max-rounds'] = a.maxRounds;
  if (a.timeoutMs !== undefined) args['timeout-ms'] = a.timeoutMs;
  // The VMM may run in another directory: absolute paths.
  if (a.tlsCa !== undefined) args['tls-ca'] = resolve(a.tlsCa);
  if (a.tlsCert !== undefined) args['tls-cert'] = resolve(a.tlsCert);
  if (a.tlsKey !== undefined) args['tls-key'] = resolve(a.tlsKey);
  if (a.pskFile !== undefined) args['psk-file'] = resolve(a.pskFile);
  return args;
}

function printReport(out: NodeJS.WritableStream, a: MigrateArgs, r: JsonObject): void {
  if (a.json) out.write(`${JSON.stringify({ ...r, to: a.to })}\n`);
  else {
    out.write(
      `migrated to ${a.to}: total ${Number(r['totalMs']).toFixed(0)} ms, downtime ${Number(r['downtimeMs']).toFixed(1)} ms` +
        `${r['guestDowntimeMs'] !== undefined ? ` (guest paused ${Number(r['guestDowntimeMs']).toFixed(1)} ms)` : ''}, ` +
        `${mib(Number(r['bytes']))} MiB in ${r['rounds']} round${r['rounds'] === 1 ? '' : 's'} + final (${r['finalPages']} pages), ${Number(r['mbps']).toFixed(0)} MiB/s\n`,
    );
  }
}

export async function migrateCommand(a: MigrateArgs): Promise<number> {
  const lib = await load();
  const to = lib.parseAddress(a.to, '--to');
  // Checked (and the files read) here for early one-line errors; the VMM, which sends the stream, reads them again.
  const files = { tlsCa: a.tlsCa, tlsCert: a.tlsCert, tlsKey: a.tlsKey, pskFile: a.pskFile };
  lib.checkSecurityFor(to, lib.loadSecurity(files, 'client'), '--to');
  const tty = process.stderr.isTTY === true;
  let drawn = false;
  const relay = to.kind === 'stdio' ? await relayStdio(lib) : null;
  const uri = relay ? relay.uri : lib.formatAddress(to);
  let r: JsonObject;
  let cancelled = false;
  const onSignal = (): void => {
    if (cancelled) return;
    cancelled = true;
    process.stderr.write(`${drawn ? '\n' : ''}xenkvm: cancelling the migration\n`);
    drawn = false;
    void lib.QmpClient.connect(a.qmp).then(
      (c) => c.execute('migrate-cancel').finally(() => c.close()),
      () => {},
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const client = await lib.QmpClient.connect(a.qmp, {
      commandTimeoutMs: 0,
      onEvent: (ev) => {
        if (ev.event !== lib.MIGRATION_PROGRESS || !tty || cancelled) return;
        process.stderr.write(progressLine(ev.data));
        drawn = true;
      },
    });
    try {
      r = (await client.execute('migrate', migrateArguments(a, uri))) as JsonObject;
    } finally {
      if (drawn) process.stderr.write('\n');
      client.close();
    }
  } catch (e) {
    if (e instanceof XenkvmError && e.code === 'E_QMP') {
      process.stderr.write(`xenkvm: ${e.message}\n`);
      return cancelled ? EXIT.interrupted : EXIT.crash;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    relay?.done();
  }
  // With --to - stdout carries the stream: the report goes to stderr.
  printReport(relay ? process.stderr : process.stdout, a, r);
  return EXIT.ok;
}
