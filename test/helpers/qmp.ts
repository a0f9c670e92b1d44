// Shared pieces of the control-socket tests: a raw line-level connection
// (to speak the protocol by hand, badly if need be), and a server started on
// a fresh registry.
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { CommandRegistry } from '../../src/qmp/registry.js';
import { QmpServer, type QmpServerOptions } from '../../src/qmp/server.js';

/** A client that sends raw text and reads parsed lines, with a timeout on every read. */
export class RawConn {
  readonly socket: Socket;
  #buf = '';
  #lines: unknown[] = [];
  #waiters: Array<(v: unknown) => void> = [];
  #closed = false;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buf += chunk;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const v = JSON.parse(line) as unknown;
        const w = this.#waiters.shift();
        if (w) w(v);
        else this.#lines.push(v);
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((r) =>
      socket.on('close', () => {
        this.#closed = true;
        r();
      }),
    );
  }

  static open(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }

  /** Connects, checks the greeting and negotiates. */
  static async ready(path: string): Promise<RawConn> {
    const c = await RawConn.open(path);
    await c.next();
    c.send({ execute: 'qmp_capabilities' });
    const r = (await c.next()) as { return?: unknown };
    if (!r.return) throw new Error(`negotiation failed: ${JSON.stringify(r)}`);
    return c;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  send(message: unknown): void {
    this.socket.write(typeof message === 'string' ? message : `${JSON.stringify(message)}\n`);
  }

  next(timeoutMs = 3000): Promise<Record<string, unknown>> {
    const queued = this.#lines.shift();
    if (queued !== undefined) return Promise.resolve(queued as Record<string, unknown>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      const w = (v: unknown): void => {
        clearTimeout(timer);
        resolve(v as Record<string, unknown>);
      };
      this.#waiters.push(w);
    });
  }

  /** Sends one command and returns the next message (tests that expect events read them separately). */
  async call(execute: string, args?: unknown, id?: unknown): Promise<Record<string, unknown>> {
    const msg: Record<string, unknown> = { execute };
    if (args !== undefined) msg['arguments'] = args;
    if (id !== undefined) msg['id'] = id;
    this.send(msg);
    return this.next();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export async function startServer(
  dir: string,
  registry = new CommandRegistry(),
  extra: Partial<QmpServerOptions> = {},
): Promise<{ server: QmpServer; path: string; errors: string[] }> {
  const errors: string[] = [];
  const path = join(dir, 'qmp.sock');
  const server = await QmpServer.listen({
    path,
    registry,
    onError: (e, what) => errors.push(`${what}: ${(e as Error).message}`),
    ...extra,
  });
  return { server, path, errors };
}
