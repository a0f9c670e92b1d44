// The client end of the control socket, used by `xenkvm ctl` and by later
// commands that drive a running xenkvm (snapshot --qmp, migrate --qmp).
// Connection problems are IoErrors with one-line messages; an error reply
// from the server is a QmpError carrying the server's description.

import { connect, type Socket } from 'node:net';
import { IoError, QmpError } from '../errors.js';
import { LineSplitter } from './line-splitter.js';
import {
  CAPABILITIES_COMMAND,
  encodeLine,
  isJsonObject,
  type JsonObject,
  type JsonValue,
  type QmpEvent,
  type QmpGreeting,
} from './protocol.js';

export interface QmpClientOptions {
  /** Connecting, reading the greeting and negotiating; default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Default for each execute(); default 30 s.  0 waits forever. */
  readonly commandTimeoutMs?: number;
  /** Longest reply line accepted, in bytes; default 64 MiB. */
  readonly maxLineBytes?: number;
  /** Called for every event the server sends. */
  readonly onEvent?: (event: QmpEvent) => void;
}

interface Pending {
  readonly name: string;
  readonly resolve: (v: JsonValue) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout | undefined;
}

type Waiter = (message: JsonObject) => void;

export class QmpClient {
  readonly path: string;
  readonly greeting: QmpGreeting;
  readonly #socket: Socket;
  readonly #commandTimeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #failure: Error | null = null;

  /** Connects, reads the greeting and sends qmp_capabilities. */
  static async connect(path: string, options: QmpClientOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.connectTimeoutMs ?? 5000;
    const socket = connect(path);
    const splitter = new LineSplitter(options.maxLineBytes ?? 64 << 20);
    let waiter: Waiter | null = null;
    let client: QmpClient | null = null;
    let early: Error | null = null;
    let fail: (e: Error) => void = (e) => {
      early = e;
    };

    socket.on('data', (chunk: Buffer) => {
      const { messages, error } = messagesIn(splitter, chunk, path, options.maxLineBytes ?? 64 << 20);
      for (const message of messages) {
        if (client) client.#onMessage(message, options.onEvent);
        else if (waiter) waiter(message);
      }
      if (error) {
        fail(error);
        socket.destroy();
      }
    });
    socket.on('error', (err) => fail(connectionError(path, err)));
    socket.on('close', () => fail(new IoError(`${path} closed the connection`)));

    const nextMessage = (): Promise<JsonObject> =>
      new Promise((resolve, reject) => {
        if (early) return reject(early);
        waiter = (m) => {
          waiter = null;
          resolve(m);
        };
        fail = (e) => {
          early ??= e;
          waiter = null;
          reject(e);
        };
      });

    let timer: NodeJS.Timeout | undefined;
    const handshake = greet(path, socket, nextMessage);
    try {
      const greeting = await Promise.race([
        handshake,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new IoError(`no greeting from ${path} within ${timeoutMs} ms; is a xenkvm listening there?`)),
            timeoutMs,
          );
        }),
      ]);
      client = new QmpClient(path, socket, greeting, options.commandTimeoutMs ?? 30_000);
      fail = (e) => client!.#failAll(e);
      return client;
    } catch (err) {
      socket.destroy();
      handshake.catch(() => {});
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private constructor(path: string, socket: Socket, greeting: QmpGreeting, commandTimeoutMs: number) {
    this.path = path;
    this.#socket = socket;
    this.greeting = greeting;
    this.#commandTimeoutMs = commandTimeoutMs;
  }

  /** Runs one command; resolves with its `return` value, throws QmpError for an error reply. */
  execute(name: string, args?: JsonObject, options: { timeoutMs?: number } = {}): Promise<JsonValue> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? this.#commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.#pending.delete(id);
              reject(new IoError(`no answer to '${name}' from ${this.path} within ${timeoutMs} ms`));
            }, timeoutMs)
          : undefined;
      this.#pending.set(id, { name, resolve, reject, timer });
      const request: JsonObject = args === undefined ? { execute: name, id } : { execute: name, arguments: args, id };
      this.#socket.write(encodeLine(request));
    });
  }

  /** Closes the connection; commands still waiting fail. */
  close(): void {
    this.#failAll(new IoError(`connection to ${this.path} closed`));
    this.#socket.destroy();
  }

  #onMessage(message: JsonObject, onEvent: QmpClientOptions['onEvent']): void {
    if (typeof message['event'] === 'string') {
      onEvent?.(message as unknown as QmpEvent);
      return;
    }
    // A reply without an id answers a line the server could not read, which
    // can only be the oldest request still waiting.  One with an id we no
    // longer wait for is the late answer to a timed-out request: dropped.
    const key = 'id' in message ? message['id'] : this.#pending.keys().next().value;
    if (typeof key !== 'number' || !this.#pending.has(key)) return;
    const pending = this.#pending.get(key)!;
    this.#pending.delete(key);
    clearTimeout(pending.timer);
    if ('return' in message) pending.resolve(message['return'] as JsonValue);
    else pending.reject(serverError(message, pending.name));
  }

  #failAll(err: Error): void {
    this.#failure ??= err;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
  }
}

/**
 * The JSON objects on the complete lines of `chunk`, up to a line longer
 * than `limit` or one that is not JSON (then `error`).
 */
function messagesIn(
  splitter: LineSplitter,
  chunk: Buffer,
  path: string,
  limit: number,
): { messages: JsonObject[]; error: IoError | null } {
  const messages: JsonObject[] = [];
  for (const item of splitter.push(chunk)) {
    if (item.kind === 'overflow')
      return { messages, error: new IoError(`reply from ${path} is longer than the ${limit}-byte limit`) };
    if (item.text.trim() === '') continue;
    let message: unknown;
    try {
      message = JSON.parse(item.text);
    } catch {
      return {
        messages,
        error: new IoError(`${path} sent something that is not JSON; is it a xenkvm control socket?`),
      };
    }
    if (isJsonObject(message)) messages.push(message);
  }
  return { messages, error: null };
}

/** Reads the greeting and negotiates capabilities; resolves with the greeting. */
async function greet(path: string, socket: Socket, nextMessage: () => Promise<JsonObject>): Promise<QmpGreeting> {
  const greeting = await nextMessage();
  if (!isJsonObject(greeting['QMP'])) {
    const err = greeting['error'];
    const desc = isJsonObject(err) && typeof err['desc'] === 'string' ? `: ${err['desc']}` : '';
    throw new IoError(`${path} did not greet like a xenkvm control socket${desc}`);
  }
  const reply = new Promise<JsonObject>((resolve, reject) => {
    void nextMessage().then(resolve, reject);
  });
  socket.write(encodeLine({ execute: CAPABILITIES_COMMAND }));
  const answer = await reply;
  if (!('return' in answer)) throw serverError(answer, CAPABILITIES_COMMAND);
  return greeting as unknown as QmpGreeting;
}

/** Connects, runs one command and disconnects. */
export async function executeOnce(
  path: string,
  name: string,
  args?: JsonObject,
  options: QmpClientOptions = {},
): Promise<JsonValue> {
  const client = await QmpClient.connect(path, options);
  try {
    return await client.execute(name, args);
  } finally {
    client.close();
  }
}

function serverError(message: JsonObject, command: string): QmpError {
  const err = message['error'];
  if (isJsonObject(err) && typeof err['desc'] === 'string') {
    return new QmpError(typeof err['class'] === 'string' ? err['class'] : 'GenericError', err['desc']);
  }
  return new QmpError('GenericError', `malformed reply to '${command}'`);
}

/** One line a person can act on, for the usual ways a connect fails. */
function connectionError(path: string, err: Error): IoError {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new IoError(`no xenkvm is listening on ${path}`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new IoError(`permission denied on ${path} (the control socket is only for the user running xenkvm)`, {
        cause: err,
      });
    case 'ENOTSOCK':
    case 'ENOTDIR':
      return new IoError(`${path} is not a socket`, { cause: err });
    default:
      return new IoError(`cannot talk to ${path}: ${err.message}`, { cause: err });
  }
}
