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
import { QmpClient } from '../qmp/client.js';
import type { JsonObject } from '../qmp/protocol.js';
import {
  checkSecurityFor,
  formatAddress,
  listenOn,
  parseAddress,
  type Listener,
} from '../migrate/live/transport/address.js';
import { loadSecurity } from '../migrate/live/transport/security.js';
import { MIGRATION_PROGRESS } from '../migrate/live/qmp-commands.js';
import { EXIT } from './exit-codes.js';

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

const mib = (n: number): string => (n / (1 << 20)).toFixed(1);

/** `--to -`: a private unix socket the VMM connects to, piped to stdout and from stdin. */
async function relayStdio(): Promise<{ uri: string; listener: Listener; done: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-migrate-'));
  const path = join(dir, 'relay.sock');
  const listener = await listenOn({ kind: 'unix', path });
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

export async function migrateCommand(a: MigrateArgs): Promise<number> {
  const to = parseAddress(a.to, '--to');
  // Checked (and the files read) here for early one-line errors; the VMM, which sends the stream, reads them again.
  const files = { tlsCa: a.tlsCa, tlsCert: a.tlsCert, tlsKey: a.tlsKey, pskFile: a.pskFile };
  checkSecurityFor(to, loadSecurity(files, 'client'), '--to');
  const tty = process.stderr.isTTY === true;
  let drawn = false;
  const relay = to.kind === 'stdio' ? await relayStdio() : null;
  const uri = relay ? relay.uri : formatAddress(to);
  let r: JsonObject;
  let cancelled = false;
  const onSignal = (): void => {
    if (cancelled) return;
    cancelled = true;
    process.stderr.write(`${drawn ? '\n' : ''}xenkvm: cancelling the migration\n`);
    drawn = false;
    void QmpClient.connect(a.qmp).then(
      (c) => c.execute('migrate-cancel').finally(() => c.close()),
      () => {},
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const client = await QmpClient.connect(a.qmp, {
      commandTimeoutMs: 0,
      onEvent: (ev) => {
        if (ev.event !== MIGRATION_PROGRESS || !tty || cancelled) return;
        const p = ev.data as {
          round?: number;
          final?: boolean;
          sentBytes?: number;
          dirtyPages?: number;
          mbps?: number;
          dirtyMiBs?: number;
          expectedDowntimeMs?: number;
        };
        const what = p.final ? 'final (paused)' : `round ${p.round}`;
        process.stderr.write(
          `\r\x1b[Kmigrate ${what}: ${mib(Number(p.sentBytes ?? 0))} MiB sent, ${p.dirtyPages ?? 0} pages, dirty ${Number(p.dirtyMiBs ?? 0).toFixed(0)} MiB/s, ` +
            `${Number(p.mbps ?? 0).toFixed(0)} MiB/s, expected downtime ${Number(p.expectedDowntimeMs ?? 0).toFixed(0)} ms`,
        );
        drawn = true;
      },
    });
    const args: JsonObject = { uri, 'on-timeout': a.onTimeout };
    if (a.downtimeMs !== undefined) args['downtime-ms'] = a.downtimeMs;
    if (a.maxRounds !== undefined) args['max-rounds'] = a.maxRounds;
    if (a.timeoutMs !== undefined) args['timeout-ms'] = a.timeoutMs;
    // The VMM may run in another directory: absolute paths.
    if (a.tlsCa !== undefined) args['tls-ca'] = resolve(a.tlsCa);
    if (a.tlsCert !== undefined) args['tls-cert'] = resolve(a.tlsCert);
    if (a.tlsKey !== undefined) args['tls-key'] = resolve(a.tlsKey);
    if (a.pskFile !== undefined) args['psk-file'] = resolve(a.pskFile);
    try {
      r = (await client.execute('migrate', args)) as JsonObject;
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
  const out = relay ? process.stderr : process.stdout;
  if (a.json) out.write(`${JSON.stringify({ ...r, to: a.to })}\n`);
  else {
    out.write(
      `migrated to ${a.to}: total ${Number(r['totalMs']).toFixed(0)} ms, downtime ${Number(r['downtimeMs']).toFixed(1)} ms` +
        `${r['guestDowntimeMs'] !== undefined ? ` (guest paused ${Number(r['guestDowntimeMs']).toFixed(1)} ms)` : ''}, ` +
        `${mib(Number(r['bytes']))} MiB in ${r['rounds']} round${r['rounds'] === 1 ? '' : 's'} + final (${r['finalPages']} pages), ${Number(r['mbps']).toFixed(0)} MiB/s\n`,
    );
  }
  return EXIT.ok;
}
