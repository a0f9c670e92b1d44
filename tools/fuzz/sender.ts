// The source's side of a migration, reduced to what the fuzzer needs: connect
// over TCP, write a (mutated) stream as src/migrate/live/send.ts does (the
// record stream, then read lines back on the same connection: `ACK n` for a
// SYNC, then one `OK running …` or `ERR …`), and report what came back.
import { connect, type Socket } from 'node:net';

export interface SendResult {
  /** Lines the destination wrote, in order. */
  lines: string[];
  /** The answer line (`OK running …` / `ERR …`), or null if none came. */
  answer: string | null;
  /** How the connection ended, when not cleanly (`ECONNRESET`, `timeout`). */
  error: string | null;
}

/**
 * Sends `bytes` to `host:port` and waits (at most `ms`) for the answer
 * line.  After the bytes the write side is closed: a truncated stream meets
 * end of stream at the destination, as a dead source's would.
 */
export function sendStream(
  host: string,
  port: number,
  bytes: Uint8Array,
  ms: number,
  onLine?: (line: string) => void,
): Promise<SendResult> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    let answer: string | null = null;
    let error: string | null = null;
    let pending = '';
    let done = false;
    const sock: Socket = connect({ host, port });
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ lines, answer, error });
    };
    const timer = setTimeout(() => {
      error = 'timeout';
      finish();
    }, ms);
    sock.setNoDelay(true);
    sock.on('connect', () => {
      sock.write(bytes, () => sock.end());
    });
    sock.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        onLine?.(line);
        if (answer === null && (line.startsWith('OK') || line.startsWith('ERR'))) {
          answer = line;
          // The source stops reading after its answer; a destination that sends more is not our concern.
          finish();
          return;
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // A destination that refuses early closes while we still write: its answer may still be in.
      error ??= e.code ?? e.message;
    });
    sock.on('close', finish);
  });
}
