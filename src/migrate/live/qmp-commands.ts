// QMP commands of a running machine for live migration:
//   migrate {uri, downtime-ms?, max-rounds?, timeout-ms?, on-timeout?,
//            tls-ca?, tls-cert?, tls-key?, psk-file?}
//     sends the guest to a listening `xenkvm receive` (over TLS when tls-ca
//     or psk-file is given: paths this process reads); answers when done
//     (with the report) or failed (an error; the guest runs on here).  On
//     success the guest is stopped here once the reply is out: the process
//     ends as after `quit`, saying where the guest went.
//   query-migrate        status, last round's progress, the report or error
//   migrate-cancel       cancels a migration that has not sent its final state
// Each round emits MIGRATION_PROGRESS {round, final, sentBytes, dirtyPages,
// mbps, dirtyMiBs, expectedDowntimeMs}.
import { InputError } from '../../errors.js';
import { emitResume, emitStop } from '../../qmp/events.js';
import type { JsonObject } from '../../qmp/protocol.js';
import type { CommandRegistry } from '../../qmp/registry.js';
import { arg, type ArgsOf } from '../../qmp/schema.js';
import type { EventSink } from '../../qmp/server.js';
import type { RunState } from '../../machine/qmp-commands.js';
import type { Duplex } from 'node:stream';
import { connectTo, formatAddress, parseAddress, type MigrationAddress } from './transport/address.js';
import { loadSecurity, type StreamSecurity } from './transport/security.js';
import { MigrationError, type MigrateOptions, type MigrationReport, type RoundProgress } from './send.js';

export const MIGRATION_PROGRESS = 'MIGRATION_PROGRESS';

type Status = 'none' | 'active' | 'completed' | 'failed' | 'cancelled';

/** What these commands need of a machine. */
export interface MigrationTarget {
  status(): RunState;
  /** Sends the guest over `sock` (send.ts's migrate); resolves once it runs over there. */
  send(sock: Duplex, opts: MigrateOptions): Promise<MigrationReport>;
  /** Ends the machine here, as `quit` does; called after the reply to a migration that succeeded. */
  quit(by: string): void;
  /** Where MIGRATION_PROGRESS, and STOP and RESUME around the final round, go; null: nowhere (yet). */
  events(): EventSink | null;
}

/** The migrate command's arguments. */
const MIGRATE_ARGS = {
  uri: arg.string({ maxLength: 4096 }),
  'downtime-ms': arg.optional(arg.integer({ min: 1, max: 600_000 })),
  'max-rounds': arg.optional(arg.integer({ min: 1, max: 10_000 })),
  'timeout-ms': arg.optional(arg.integer({ min: 1, max: 86_400_000 })),
  'on-timeout': arg.optional(arg.enum(['pause', 'cancel'] as const)),
  'tls-ca': arg.optional(arg.string({ maxLength: 4096 })),
  'tls-cert': arg.optional(arg.string({ maxLength: 4096 })),
  'tls-key': arg.optional(arg.string({ maxLength: 4096 })),
  'psk-file': arg.optional(arg.string({ maxLength: 4096 })),
};

type MigrateArgs = ArgsOf<typeof MIGRATE_ARGS>;

/** Where to send the guest, and how to secure the connection (tls-*, psk-file as the CLI's flags). */
function destinationOf(a: MigrateArgs): { addr: MigrationAddress; security: StreamSecurity } {
  const addr = parseAddress(a.uri, 'uri');
  if (addr.kind === 'stdio')
    throw new InputError(
      "uri '-' is for xenkvm migrate --to - (it relays the stream); give tcp:HOST:PORT or unix:PATH here",
    );
  const security = loadSecurity(
    { tlsCa: a['tls-ca'], tlsCert: a['tls-cert'], tlsKey: a['tls-key'], pskFile: a['psk-file'] },
    'client',
    { tlsCa: 'tls-ca', tlsCert: 'tls-cert', tlsKey: 'tls-key', pskFile: 'psk-file' },
  );
  return { addr, security };
}

/** The limits given, and only those (the sender's defaults stand for the rest). */
function limitsOf(a: MigrateArgs): Partial<MigrateOptions> {
  return {
    ...(a['downtime-ms'] !== undefined ? { downtimeMs: a['downtime-ms'] } : {}),
    ...(a['max-rounds'] !== undefined ? { maxRounds: a['max-rounds'] } : {}),
    ...(a['timeout-ms'] !== undefined ? { timeoutMs: a['timeout-ms'] } : {}),
    ...(a['on-timeout'] !== undefined ? { onTimeout: a['on-timeout'] } : {}),
  };
}

/** Progress, pause and resume as QMP events (MIGRATION_PROGRESS, STOP, RESUME) on the target's sink. */
function eventsFor(target: MigrationTarget, onProgress: (p: RoundProgress) => void): Partial<MigrateOptions> {
  return {
    onProgress: (p) => {
      onProgress(p);
      target.events()?.emitEvent(MIGRATION_PROGRESS, { ...p });
    },
    onPause: () => {
      const s = target.events();
      if (s) emitStop(s);
    },
    onResume: () => {
      const s = target.events();
      if (s) emitResume(s);
    },
  };
}

export function registerMigrationCommands(registry: CommandRegistry, target: MigrationTarget): void {
  let status: Status = 'none';
  let progress: RoundProgress | null = null;
  let report: MigrationReport | null = null;
  let error: string | null = null;
  let cancel: AbortController | null = null;

  registry.register({
    name: 'migrate',
    description:
      'live-migrate the guest to a listening xenkvm receive (uri tcp:HOST:PORT or unix:PATH; TLS with tls-ca [tls-cert tls-key] or psk-file); answers when done or failed',
    args: MIGRATE_ARGS,
    handler: async (a, ctx) => {
      if (status === 'active')
        throw new InputError('a migration is already in progress (query-migrate; migrate-cancel)');
      if (target.status() === 'shutdown') throw new InputError('the guest has stopped: nothing to migrate');
      const { addr, security } = destinationOf(a);
      status = 'active';
      progress = null;
      report = null;
      error = null;
      cancel = new AbortController();
      try {
        const sock = await connectTo(addr, 10_000, security).catch((e: unknown) => {
          throw new MigrationError(e instanceof Error ? e.message : String(e), { cause: e });
        });
        const r = await target.send(sock, {
          ...limitsOf(a),
          signal: cancel.signal,
          ...eventsFor(target, (p) => (progress = p)),
        });
        status = 'completed';
        report = r;
        const where = formatAddress(addr);
        // The guest lives on over there; this process ends as after `quit`.
        ctx.afterReply(() => target.quit(`migration: the guest now runs at ${where}`));
        return { status, to: where, ...r } as unknown as JsonObject;
      } catch (e) {
        status = cancel.signal.aborted ? 'cancelled' : 'failed';
        error = e instanceof Error ? e.message : String(e);
        if (e instanceof MigrationError)
          throw new MigrationError(
            target.status() === 'shutdown'
              ? `migration failed: ${e.message}`
              : `migration failed, the guest runs on here: ${e.message}`,
            { cause: e },
          );
        throw e;
      } finally {
        cancel = null;
      }
    },
  });

  registry.register({
    name: 'query-migrate',
    description:
      'status of the last migration: none, active, completed, failed or cancelled, with its progress and report',
    args: {},
    handler: () => {
      const out: JsonObject = { status };
      if (progress) out['progress'] = { ...progress };
      if (report) out['report'] = { ...report };
      if (error) out['error'] = error;
      return out;
    },
  });

  registry.register({
    name: 'migrate-cancel',
    description: 'cancel the migration in progress (before its final state is sent); the guest runs on here',
    args: {},
    handler: () => {
      cancel?.abort();
      return { status };
    },
  });
}
