// Where a migration stream goes or comes from: `tcp:HOST:PORT`,
// `unix:PATH`, or `-` (stdin/stdout, to pipe through ssh).  The stream is
// neither encrypted nor authenticated: whoever can reach a listening
// `receive` can hand it a guest, and anyone on the path can read guest memory.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { IoError, UsageError } from '../../errors.js';
import { describeIoError } from '../sink.js';

export type MigrationAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'stdio' };

const FORMS = 'tcp:HOST:PORT, unix:PATH or -';

/** Parses ADDR; `what` names the option in errors (--to, --listen). */
export function parseAddress(text: string, what: string): MigrationAddress {
  if (text === '-') return { kind: 'stdio' };
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (path === '') throw new UsageError(`${what}: unix: needs a socket path (unix:/run/vm.sock)`);
    if (path.includes('\0')) throw new UsageError(`${what}: the socket path contains a NUL byte`);
    return { kind: 'unix', path };
  }
  if (text.startsWith('tcp:')) {
    const rest = text.slice(4);
    const colon = rest.lastIndexOf(':');
    if (colon < 0) throw new UsageError(`${what}: ${text} lacks a port (tcp:HOST:PORT)`);
    let host = rest.slice(0, colon);
    const portText = rest.slice(colon + 1);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (host === '') throw new UsageError(`${what}: ${text} lacks a host (tcp:HOST:PORT; tcp:0.0.0.0:PORT listens everywhere)`);
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new UsageError(`${what}: port '${portText}' is not 0..65535`);
    return { kind: 'tcp', host, port: Number(portText) };
  }
  throw new UsageError(`${what}: '${text}' is not an address (${FORMS})`);
}

export function formatAddress(a: MigrationAddress): string {
  switch (a.kind) {
    case 'stdio':
      return '-';
    case 'unix':
      return `unix:${a.path}`;
    case 'tcp':
      return `tcp:${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  }
}

/** Connects to a listening `receive`; fails with a one-line IoError after `timeoutMs`. */
export function connectTo(a: MigrationAddress, timeoutMs = 10_000): Promise<Socket> {
  if (a.kind === 'stdio') return Promise.reject(new UsageError("'-' is not an address this process can connect to"));
  return new Promise((resolve, reject) => {
    const s = a.kind === 'tcp' ? connect({ host: a.host, port: a.port, allowHalfOpen: true }) : connect({ path: a.path, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new IoError(`cannot connect to ${formatAddress(a)}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      s.setNoDelay(true);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new IoError(`cannot connect to ${formatAddress(a)}: ${describeIoError(err)}`, { cause: err }));
    };
    s.once('error', onError);
  });
}

export interface Listener {
  /** The address actually bound (tcp port 0 becomes the chosen port). */
  readonly address: MigrationAddress;
  /** The first connection; the listener stops listening once it arrives. */
  accept(signal?: AbortSignal): Promise<Socket>;
  close(): void;
}

/** Listens on a tcp or unix address for one incoming migration. */
export async function listenOn(a: MigrationAddress): Promise<Listener> {
  if (a.kind === 'stdio') throw new UsageError("'-' is not an address to listen on");
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new IoError(`cannot listen on ${formatAddress(a)}: ${describeIoError(err)}`, { cause: err })));
    if (a.kind === 'tcp') server.listen({ host: a.host, port: a.port, exclusive: true }, resolve);
    else server.listen({ path: a.path, exclusive: true }, resolve);
  });
  const bound = server.address();
  const address: MigrationAddress = a.kind === 'tcp' && bound && typeof bound === 'object' ? { kind: 'tcp', host: a.host, port: bound.port } : a;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    server.close();
  };
  return {
    address,
    close,
    accept: (signal) =>
      new Promise<Socket>((resolve, reject) => {
        const onAbort = (): void => {
          close();
          reject(new IoError('interrupted while waiting for an incoming migration'));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        server.once('connection', (s: Socket) => {
          signal?.removeEventListener('abort', onAbort);
          close();
          s.setNoDelay(true);
          resolve(s);
        });
      }),
  };
}
