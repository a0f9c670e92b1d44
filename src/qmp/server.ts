// The control socket: a QMP-style JSON server on a unix socket (protocol in
// protocol.ts, per-client handling in session.ts, socket creation rules in
// socket-path.ts).  It owns the listening socket and the set of sessions, and
// broadcasts events; what commands exist is the registry's business.

import { createServer, type Server, type Socket } from 'node:net';
import { CommandRegistry } from './registry.js';
import {
  DEFAULT_QMP_LIMITS,
  encodeLine,
  qmpTimestamp,
  type JsonObject,
  type QmpEvent,
  type QmpGreeting,
  type QmpLimits,
} from './protocol.js';
import { QmpSession } from './session.js';
import { listenOwnerOnly, removeSocket, type SocketIdentity } from './socket-path.js';
import { packageVersion } from '../version.js';

export interface QmpServerOptions {
  /** Where the socket goes; see socket-path.ts for what is refused. */
  readonly path: string;
  readonly registry: CommandRegistry;
  /** Announced in the greeting; default package.json's version. */
  readonly version?: string;
  readonly limits?: Partial<QmpLimits>;
  /**
   * Problems no client can be told about (a client dropped for not reading,
   * an after-reply action that failed).  Default: one line on stderr.
   */
  readonly onError?: (err: unknown, what: string) => void;
}

/** Something that accepts events; what machine code needs of the server. */
export interface EventSink {
  emitEvent(name: string, data?: JsonObject): void;
}

export class QmpServer implements EventSink {
  readonly path: string;
  readonly #server: Server;
  readonly #identity: SocketIdentity;
  readonly #greeting: QmpGreeting;
  readonly #registry: CommandRegistry;
  readonly #limits: QmpLimits;
  readonly #onError: (err: unknown, what: string) => void;
  readonly #sessions = new Set<QmpSession>();
  #closing: Promise<void> | null = null;

  /** Creates the socket (mode 0600) and starts accepting clients. */
  static async listen(options: QmpServerOptions): Promise<QmpServer> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: false });
    // The socket is connectable as soon as it is bound, before this server
    // object exists: hold early clients and greet them once it does.
    const early: Socket[] = [];
    const hold = (socket: Socket) => early.push(socket);
    server.on('connection', hold);
    const identity = await listenOwnerOnly(server, options.path);
    server.off('connection', hold);
    const qmp = new QmpServer(server, identity, options);
    for (const socket of early) qmp.#accept(socket);
    return qmp;
  }

  private constructor(server: Server, identity: SocketIdentity, options: QmpServerOptions) {
    this.#server = server;
    this.#identity = identity;
    this.path = identity.path;
    this.#registry = options.registry;
    this.#limits = { ...DEFAULT_QMP_LIMITS, ...options.limits };
    this.#onError =
      options.onError ??
      ((err, what) =>
        process.stderr.write(`xenkvm: control socket: ${what}: ${err instanceof Error ? err.message : String(err)}\n`));
    this.#greeting = { QMP: { version: { xenkvm: options.version ?? packageVersion() }, capabilities: [] } };
    server.on('connection', (socket) => this.#accept(socket));
    // An accept() failure (EMFILE) must not kill the VMM; the listener stays up.
    server.on('error', (err) => this.#onError(err, 'accept'));
  }

  /** Number of connected clients. */
  get clientCount(): number {
    return this.#sessions.size;
  }

  /** Sends `{"event": name, "data": data, "timestamp": ...}` to every client past negotiation. */
  emitEvent(name: string, data: JsonObject = {}): void {
    const event: QmpEvent = { event: name, data, timestamp: qmpTimestamp() };
    for (const s of this.#sessions) s.sendEvent(event);
  }

  /**
   * Stops accepting, lets each client's running command finish and its reply
   * flush, disconnects everyone and removes the socket.  Idempotent.  A
   * handler must not await this (it would wait for itself): use
   * `ctx.afterReply`, as `quit` does.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = new Promise<void>((r) => this.#server.close(() => r()));
      await Promise.all([...this.#sessions].map((s) => s.close()));
      await stopped;
      await removeSocket(this.#identity);
    })();
    return this.#closing;
  }

  /** Like close() without waiting for anything: running commands see their signal aborted. */
  destroy(): Promise<void> {
    for (const s of this.#sessions) s.destroy();
    return this.close();
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (this.#sessions.size >= this.#limits.maxClients) this.#evictIdlest();
    if (this.#sessions.size >= this.#limits.maxClients) {
      socket.on('error', () => {});
      const refusal = encodeLine({
        error: {
          class: 'GenericError',
          desc: `too many clients (at most ${this.#limits.maxClients}); try again later`,
        },
      });
      socket.end(refusal, () => socket.destroy());
      return;
    }
    const session = new QmpSession(socket, this.#registry, this.#limits, {
      onClosed: (s) => this.#sessions.delete(s),
      onError: this.#onError,
    });
    this.#sessions.add(session);
    session.send(this.#greeting);
  }

  /** Frees the slot of the client idle longest, if it has been idle for evictIdleMs (see QmpLimits). */
  #evictIdlest(): void {
    const min = this.#limits.evictIdleMs;
    if (min <= 0) return;
    let idlest: QmpSession | null = null;
    for (const s of this.#sessions) {
      if (!s.busy && s.idleMs >= min && (idlest === null || s.idleMs > idlest.idleMs)) idlest = s;
    }
    if (idlest === null) return;
    // Its socket closes in a moment; the slot is free now.
    this.#sessions.delete(idlest);
    idlest.drop(`idle for ${Math.round(idlest.idleMs / 1000)} s and every slot is taken: a new client gets this one`);
  }
}
