// One connected control-socket client.  Requests are read as lines and run
// one at a time, in order, as QEMU does for a monitor without out-of-band
// execution; other clients are served concurrently by their own sessions.
// Nothing a client sends can throw out of here: every bad request becomes an
// error reply, and a client that will not read its replies is disconnected.

import type { Socket } from 'node:net';
import { QmpError } from '../errors.js';
import { LineSplitter, type SplitItem } from './line-splitter.js';
import {
  CAPABILITIES_COMMAND,
  encodeLine,
  isJsonObject,
  type JsonValue,
  type QmpErrorBody,
  type QmpEvent,
  type QmpLimits,
} from './protocol.js';
import { errorBodyFor, type CommandContext, type CommandPhase, type CommandRegistry } from './registry.js';

/** Members a request may have (QEMU also has 'exec-oob', which we do not offer). */
const REQUEST_MEMBERS = new Set(['execute', 'arguments', 'id']);

export interface SessionHooks {
  /** The socket is gone; the server forgets the session. */
  onClosed(session: QmpSession): void;
  /** Something went wrong that no client can be told about (an afterReply hook failed...). */
  onError(err: unknown, what: string): void;
}

export class QmpSession {
  readonly #socket: Socket;
  readonly #registry: CommandRegistry;
  readonly #limits: QmpLimits;
  readonly #hooks: SessionHooks;
  readonly #splitter: LineSplitter;
  readonly #abort = new AbortController();
  #phase: CommandPhase = 'negotiation';
  #queue: SplitItem[] = [];
  /** The loop draining #queue; null when idle. */
  #running: Promise<void> | null = null;
  #readingStopped = false;
  #closed = false;
  readonly #gone: Promise<void>;
  #markGone!: () => void;
  /** When the client connected or last sent a request (performance.now()). */
  #lastActive = performance.now();
  #negotiationTimer: NodeJS.Timeout | null = null;

  constructor(socket: Socket, registry: CommandRegistry, limits: QmpLimits, hooks: SessionHooks) {
    this.#socket = socket;
    this.#registry = registry;
    this.#limits = limits;
    this.#hooks = hooks;
    this.#splitter = new LineSplitter(limits.maxLineBytes);
    this.#gone = new Promise((r) => {
      this.#markGone = r;
    });
    socket.on('data', (chunk: Buffer) => this.#enqueue(this.#splitter.push(chunk)));
    socket.on('end', () => {
      this.#enqueue(this.#splitter.end());
      // Half-closed by the client: answer what it sent, then close our side.
      void this.#idle().then(() => this.#socket.end());
    });
    // EPIPE/ECONNRESET from a client that vanished: 'close' follows and cleans up.
    socket.on('error', () => {});
    if (limits.negotiationTimeoutMs > 0) {
      this.#negotiationTimer = setTimeout(() => {
        this.#negotiationTimer = null;
        if (this.#phase === 'negotiation' && !this.#running) {
          this.drop(`no capabilities negotiation within ${limits.negotiationTimeoutMs} ms of connecting`);
        }
      }, limits.negotiationTimeoutMs);
      this.#negotiationTimer.unref();
    }
    socket.on('close', () => {
      if (this.#negotiationTimer) clearTimeout(this.#negotiationTimer);
      this.#closed = true;
      this.#queue = [];
      this.#abort.abort(new QmpError('GenericError', 'client disconnected'));
      this.#hooks.onClosed(this);
      this.#markGone();
    });
  }

  /** True once the client has finished capability negotiation. */
  get commandMode(): boolean {
    return this.#phase === 'command';
  }

  send(message: unknown): void {
    if (this.#closed || this.#socket.destroyed) return;
    let line: string;
    try {
      line = encodeLine(message);
    } catch (err) {
      // A handler returned something JSON cannot carry (a bigint...): a bug, but not the client's problem.
      const id = isJsonObject(message) && 'id' in message ? { id: message['id'] } : {};
      line = encodeLine({ error: errorBodyFor(err), ...id });
    }
    this.#write(line);
  }

  /** Events go only to clients past negotiation, as in QEMU. */
  sendEvent(event: QmpEvent): void {
    if (this.#phase === 'command') this.send(event);
  }

  /** Stops reading, lets the running request finish and its reply flush, then closes. */
  async close(): Promise<void> {
    this.#stopReading();
    this.#queue = [];
    // A client that is gone has no reply to wait for; its handler may run on.
    await Promise.race([this.#idle(), this.#gone]);
    if (!this.#closed) this.#socket.end(() => this.#socket.destroy());
    await this.#gone;
  }

  /** Drops the client now; a running handler sees its signal aborted. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Whether a request is running or queued. */
  get busy(): boolean {
    return this.#running !== null || this.#queue.length > 0;
  }

  /** Milliseconds since the client connected or last sent a request. */
  get idleMs(): number {
    return performance.now() - this.#lastActive;
  }

  /** Tells the client why (an error line, as for a refused connection) and disconnects it. */
  drop(why: string): void {
    if (this.#closed || this.#socket.destroyed) return;
    this.#stopReading();
    this.#queue = [];
    this.#socket.end(encodeLine({ error: { class: 'GenericError', desc: `${why}; disconnected` } }), () =>
      this.#socket.destroy(),
    );
  }

  #write(line: string): void {
    this.#socket.write(line);
    if (this.#socket.writableLength > this.#limits.maxPendingOutputBytes) {
      this.#hooks.onError(
        new Error(
          `client not reading its replies (over ${this.#limits.maxPendingOutputBytes} bytes pending); disconnected`,
        ),
        'output',
      );
      this.#socket.destroy();
    }
  }

  #enqueue(items: SplitItem[]): void {
    if (this.#closed || this.#readingStopped) return;
    if (items.length > 0) this.#lastActive = performance.now();
    for (const item of items) this.#queue.push(item);
    // Backpressure rather than refusal: a client pipelining many requests
    // simply waits, and the queue stays bounded (by one chunk's worth).
    if (this.#queue.length >= this.#limits.maxQueuedRequests) this.#socket.pause();
    if (!this.#running && this.#queue.length > 0) {
      this.#running = this.#drain().finally(() => {
        this.#running = null;
      });
    }
  }

  async #drain(): Promise<void> {
    let item: SplitItem | undefined;
    while ((item = this.#queue.shift()) !== undefined) {
      if (this.#closed) return;
      await this.#handle(item);
      if (this.#queue.length < this.#limits.maxQueuedRequests && !this.#readingStopped && !this.#closed)
        this.#socket.resume();
    }
  }

  #idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  #stopReading(): void {
    this.#readingStopped = true;
    this.#socket.pause();
  }

  async #handle(item: SplitItem): Promise<void> {
    if (item.kind === 'overflow') {
      this.#replyError({
        class: 'GenericError',
        desc: `request line too long (${item.bytes} bytes; the limit is ${this.#limits.maxLineBytes})`,
      });
      return;
    }
    if (item.text.trim() === '') return;
    let request: unknown;
    try {
      request = JSON.parse(item.text);
    } catch (err) {
      this.#replyError({ class: 'GenericError', desc: `JSON parse error: ${(err as Error).message}` });
      return;
    }
    if (!isJsonObject(request)) {
      this.#replyError({ class: 'GenericError', desc: 'QMP input must be a JSON object' });
      return;
    }
    // The id is echoed on every reply to this request, even an error about its other members.
    const id = Object.hasOwn(request, 'id') ? request['id'] : undefined;
    const bad = this.#checkRequest(request);
    if (bad) {
      this.#replyError({ class: 'GenericError', desc: bad }, id);
      return;
    }
    const name = request['execute'] as string;
    const command = this.#registry.lookup(name);
    if (!command) {
      this.#replyError({ class: 'CommandNotFound', desc: `The command ${name} has not been found` }, id);
      return;
    }
    if (command.phase !== this.#phase) {
      const desc =
        this.#phase === 'negotiation'
          ? `Expecting capabilities negotiation with '${CAPABILITIES_COMMAND}'`
          : 'Capabilities negotiation is already complete, command ignored';
      this.#replyError({ class: 'CommandNotFound', desc }, id);
      return;
    }
    const after: Array<() => void | Promise<void>> = [];
    const ctx: CommandContext = {
      signal: this.#abort.signal,
      afterReply: (fn) => void after.push(fn),
      enterCommandMode: () => {
        this.#phase = 'command';
        if (this.#negotiationTimer) clearTimeout(this.#negotiationTimer);
        this.#negotiationTimer = null;
      },
    };
    let reply: object;
    try {
      const result = await command.run(request['arguments'], ctx);
      reply = id === undefined ? { return: result } : { return: result, id };
    } catch (err) {
      reply = id === undefined ? { error: errorBodyFor(err) } : { error: errorBodyFor(err), id };
    }
    this.send(reply);
    // Not awaited: a hook may close the server, and closing waits for this
    // request loop to go idle.
    if (after.length > 0) void this.#runAfterReply(after);
  }

  /** Why a request object is malformed, in QEMU's words, or null. */
  #checkRequest(request: Record<string, JsonValue>): string | null {
    for (const key of Object.keys(request)) {
      if (!REQUEST_MEMBERS.has(key)) return `QMP input member '${key}' is unexpected`;
    }
    if (!Object.hasOwn(request, 'execute')) return "QMP input lacks member 'execute'";
    if (typeof request['execute'] !== 'string') return "QMP input member 'execute' must be a string";
    if (Object.hasOwn(request, 'arguments') && !isJsonObject(request['arguments']))
      return "QMP input member 'arguments' must be an object";
    return null;
  }

  #replyError(error: QmpErrorBody, id?: JsonValue): void {
    this.send(id === undefined ? { error } : { error, id });
  }

  /** Waits until the reply is with the kernel (or the client is gone), then runs the hooks in order. */
  async #runAfterReply(hooks: Array<() => void | Promise<void>>): Promise<void> {
    if (!this.#closed && !this.#socket.destroyed && this.#socket.writableLength > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.#socket.off('drain', done);
          this.#socket.off('close', done);
          resolve();
        };
        this.#socket.on('drain', done);
        this.#socket.on('close', done);
      });
    }
    for (const fn of hooks) {
      try {
        await fn();
      } catch (err) {
        this.#hooks.onError(err, 'after-reply action');
      }
    }
  }
}
