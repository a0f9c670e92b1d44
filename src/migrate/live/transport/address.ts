// Where a migration stream goes or comes from: `tcp:HOST:PORT`,
// `unix:PATH`, or `-` (stdin/stdout, to pipe through ssh).  Over tcp: and
// unix: the stream can be TLS (certificates or a pre-shared key, see
// security.ts); without it, it is neither encrypted nor authenticated:
// whoever can reach a listening `receive` can hand it a guest, and anyone on
// the path can read guest memory.  Either way the callers get a plain Duplex.
import { createServer, connect, isIP, type Server, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { IoError, UsageError } from '../../../errors.js';
import { describeIoError } from '../../stream/byte-sink.js';
import { clientTlsOptions, serverTlsOptions, type StreamSecurity } from './security.js';

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
    if (host === '')
      throw new UsageError(`${what}: ${text} lacks a host (tcp:HOST:PORT; tcp:0.0.0.0:PORT listens everywhere)`);
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535)
      throw new UsageError(`${what}: port '${portText}' is not 0..65535`);
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

const PLAIN: StreamSecurity = { kind: 'none' };

/** One line for a connection or TLS error (OpenSSL's messages can span lines; its `reason` is the gist). */
function describeNetError(err: unknown): string {
  const reason = (err as { reason?: unknown }).reason;
  const code = (err as { code?: unknown }).code;
  const text =
    typeof reason === 'string' && reason !== ''
      ? typeof code === 'string'
        ? `${reason} (${code})`
        : reason
      : describeIoError(err);
  return text.replace(/\s*[\r\n]+\s*/g, '; ').trim();
}

/** Refuses `-` with TLS: the pipe (ssh) is what protects the stream there. */
export function checkSecurityFor(a: MigrationAddress, security: StreamSecurity, what: string): void {
  if (a.kind === 'stdio' && security.kind !== 'none')
    throw new UsageError(
      `${what} -: TLS and pre-shared keys are for tcp: and unix: addresses; over a pipe, ssh protects the stream`,
    );
}

/**
 * Connects to a listening `receive` (with the TLS handshake done, if
 * `security` asks for it); fails with a one-line IoError after `timeoutMs`.
 */
export function connectTo(a: MigrationAddress, timeoutMs = 10_000, security: StreamSecurity = PLAIN): Promise<Socket> {
  if (a.kind === 'stdio') return Promise.reject(new UsageError("'-' is not an address this process can connect to"));
  return new Promise((resolve, reject) => {
    const where = a.kind === 'tcp' ? { host: a.host, port: a.port } : { path: a.path };
    let s: Socket;
    let ready: string;
    if (security.kind === 'none') {
      s = connect({ ...where, allowHalfOpen: true });
      ready = 'connect';
    } else {
      // Over unix: there is no host name to check; the chain is still verified.
      const name = a.kind === 'tcp' ? { servername: isIP(a.host) ? undefined : a.host } : {};
      s = tls.connect({
        ...where,
        ...name,
        allowHalfOpen: true,
        ...clientTlsOptions(security, a.kind === 'tcp'),
      } as unknown as tls.ConnectionOptions);
      ready = 'secureConnect';
    }
    let connected = false;
    s.once('connect', () => (connected = true));
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new IoError(
          `cannot connect to ${formatAddress(a)}: no ${connected ? 'TLS handshake' : 'answer'} within ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    s.once(ready, () => {
      clearTimeout(timer);
      s.off('error', onError);
      s.off('close', onClose);
      s.setNoDelay(true);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      const what =
        connected && security.kind !== 'none'
          ? `TLS handshake with ${formatAddress(a)} failed`
          : `cannot connect to ${formatAddress(a)}`;
      reject(new IoError(`${what}: ${describeNetError(err)}`, { cause: err }));
    };
    s.once('error', onError);
    // A TLS peer that closes without an alert (e.g. it rejected our certificate) ends the socket without an error.
    const onClose = (): void => onError(new Error('the connection closed during the handshake'));
    s.once('close', onClose);
  });
}

export interface Listener {
  /** The address actually bound (tcp port 0 becomes the chosen port). */
  readonly address: MigrationAddress;
  /**
   * The next connection.  The listener keeps listening until close(): a
   * connection that arrives while nobody waits in accept() (a migration is
   * in progress) is told so and closed.
   */
  accept(signal?: AbortSignal): Promise<Socket>;
  close(): void;
}

/**
 * Listens on a tcp or unix address for one incoming migration.  With TLS, a
 * connection whose handshake fails (wrong CA, wrong key, not TLS) is dropped,
 * reported to `onReject`, and the listener waits on.  (A source that rejects
 * our certificate after a TLS 1.3 handshake is only noticed at the handshake
 * timeout, 10 s.)
 */
export async function listenOn(
  a: MigrationAddress,
  security: StreamSecurity = PLAIN,
  onReject?: (why: string) => void,
): Promise<Listener> {
  if (a.kind === 'stdio') throw new UsageError("'-' is not an address to listen on");
  const secure = security.kind !== 'none';
  const server: Server = secure
    ? tls.createServer({ allowHalfOpen: true, handshakeTimeout: 10_000, ...serverTlsOptions(security) })
    : createServer({ allowHalfOpen: true, pauseOnConnect: true });
  if (secure) {
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      const from = s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'a local peer';
      onReject?.(`rejected a connection from ${from}: TLS handshake failed: ${describeNetError(err)}`);
      s.destroy();
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new IoError(`cannot listen on ${formatAddress(a)}: ${describeIoError(err)}`, { cause: err })),
    );
    if (a.kind === 'tcp') server.listen({ host: a.host, port: a.port, exclusive: true }, resolve);
    else server.listen({ path: a.path, exclusive: true }, resolve);
  });
  const bound = server.address();
  const address: MigrationAddress =
    a.kind === 'tcp' && bound && typeof bound === 'object' ? { kind: 'tcp', host: a.host, port: bound.port } : a;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    server.close();
  };
  let waiting: ((s: Socket) => void) | null = null;
  server.on(secure ? 'secureConnection' : 'connection', (s: Socket) => {
    if (waiting) {
      const take = waiting;
      waiting = null;
      s.setNoDelay(true);
      take(s);
      return;
    }
    const from = s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'a local peer';
    onReject?.(`refused a connection from ${from}: a migration is already in progress`);
    s.end('ERR a migration to this destination is already in progress\n');
    s.setTimeout(1000, () => s.destroy());
  });
  return {
    address,
    close,
    accept: (signal) =>
      new Promise<Socket>((resolve, reject) => {
        const onAbort = (): void => {
          waiting = null;
          close();
          reject(new IoError('interrupted while waiting for an incoming migration'));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        waiting = (s) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        };
      }),
  };
}
