// Child processes and sockets for the benches that drive whole VMM processes
// (snapshot): every process started here is remembered so a failing bench
// still kills what it started, and the waits are bounded so a stuck child
// cannot hang `npm run bench`.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { QmpClient, type QmpClientOptions } from '../../src/qmp/client.js';

export interface Tracked {
  readonly child: ChildProcess;
  /** Everything the child wrote to stdout and stderr so far. */
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or the signal's name) when the child ends. */
  readonly exited: Promise<number | string>;
  /** Whether it has ended. */
  done: boolean;
}

/** Processes started by `Procs`, killed by `killAll` (the bench's finally). */
export class Procs {
  readonly #live = new Set<Tracked>();

  spawn(cmd: string, args: readonly string[], opts: SpawnOptions = {}): Tracked {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const t: Tracked = {
      child,
      stdout: '',
      stderr: '',
      done: false,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          t.done = true;
          this.#live.delete(t);
          resolve(code ?? signal ?? 'unknown');
        });
        // A failed spawn (ENOENT) emits 'error' and no 'exit'.
        child.once('error', (e) => {
          t.done = true;
          this.#live.delete(t);
          t.stderr += String(e.message);
          resolve('spawn-error');
        });
      }),
    };
    child.stdout?.on('data', (b: Buffer) => {
      t.stdout += b.toString('utf8');
    });
    child.stderr?.on('data', (b: Buffer) => {
      t.stderr += b.toString('utf8');
    });
    this.#live.add(t);
    return t;
  }

  /** SIGKILL for whatever is still running (only the bench's own children, by pid). */
  async killAll(): Promise<void> {
    const live = [...this.#live];
    for (const t of live) t.child.kill('SIGKILL');
    await Promise.all(live.map((t) => t.exited));
  }
}

/** Ends a child: asks nicely with `polite` (e.g. QMP quit), then SIGKILL after `graceMs`. */
export async function stop(t: Tracked, polite: () => Promise<unknown>, graceMs = 5000): Promise<void> {
  if (t.done) return;
  try {
    await polite();
  } catch {
    // The process may close the socket before answering 'quit'; the wait below decides.
  }
  const timer = setTimeout(() => t.child.kill('SIGKILL'), graceMs);
  await t.exited;
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `read()` until it matches `re`; throws with `what` and the child's output after `timeoutMs` or if it exits. */
export async function waitForText(
  t: Tracked | null,
  read: () => string,
  re: RegExp,
  timeoutMs: number,
  what: string,
): Promise<RegExpExecArray> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const m = re.exec(read());
    if (m) return m;
    if (t?.done) throw new Error(`${what}: the process exited (${await t.exited}) first; stderr: ${tail(t.stderr)}`);
    if (performance.now() > end)
      throw new Error(`${what}: not seen within ${timeoutMs} ms${t ? `; stderr: ${tail(t.stderr)}` : ''}`);
    await sleep(20);
  }
}

/** Connections that got no greeting and were retried (see connectWhenReady). */
export let lostGreetings = 0;

/**
 * Connects to a QMP socket that a just-spawned process will create.  Polls
 * for the socket file every millisecond: the restore timings below are tens
 * to hundreds of milliseconds, so a coarser poll would show in them, and a
 * stat() per millisecond costs the measured process nothing noticeable.
 *
 * Each attempt waits at most `greetMs` for the greeting, then reconnects:
 * xenkvm's control socket appears (link into place) a few awaits before its
 * server attaches the 'connection' handler (src/qmp/server.ts), and a client
 * that connects in between is accepted by the kernel but never greeted.
 * Such a lost connection costs at most `greetMs` here and is counted.
 */
export async function connectWhenReady(t: Tracked, path: string, timeoutMs: number, greetMs = 150): Promise<QmpClient> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (t.done)
      throw new Error(
        `${path}: the process exited (${await t.exited}) before its control socket appeared; stderr: ${tail(t.stderr)}`,
      );
    if (existsSync(path)) {
      try {
        return await QmpClient.connect(path, { connectTimeoutMs: greetMs, commandTimeoutMs: 60_000 });
      } catch (e) {
        // ECONNREFUSED cannot happen (the name appears after listen()); no greeting can.
        if (/no greeting/.test((e as Error).message)) lostGreetings++;
        if (performance.now() > end) throw e;
      }
    }
    if (performance.now() > end)
      throw new Error(`${path}: no control socket within ${timeoutMs} ms; stderr: ${tail(t.stderr)}`);
    await sleep(1);
  }
}

export function tail(s: string, n = 400): string {
  const x = s.trim();
  return x.length > n ? `…${x.slice(-n)}` : x || '(empty)';
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice
 * for port 0, released at once), for a child that must listen on a port
 * named on its command line (the migrate bench's destinations).  Another
 * process could take it in between; the child then fails to listen and says so.
 */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no free TCP port on 127.0.0.1'))));
    });
  });
}

/**
 * Connects to a QMP socket that a just-spawned process creates, with the
 * caller's client options (e.g. onEvent, to see QEMU's STOP/RESUME events
 * from the start).  For servers that greet as soon as the socket exists
 * (QEMU); xenkvm's control socket wants connectWhenReady's retries.
 */
export async function connectWithOptions(
  t: Tracked,
  path: string,
  timeoutMs: number,
  options: QmpClientOptions,
): Promise<QmpClient> {
  const end = performance.now() + timeoutMs;
  while (!existsSync(path)) {
    if (t.done)
      throw new Error(
        `${path}: the process exited (${await t.exited}) before its control socket appeared; stderr: ${tail(t.stderr)}`,
      );
    if (performance.now() > end)
      throw new Error(`${path}: no control socket within ${timeoutMs} ms; stderr: ${tail(t.stderr)}`);
    await sleep(5);
  }
  return QmpClient.connect(path, { connectTimeoutMs: Math.max(1000, end - performance.now()), ...options });
}

/**
 * Runs a bench that drives VMM processes in a scratch directory: whatever
 * way it ends (returns, throws, Ctrl-C, the runner's kill), every child it
 * started is killed and the directory removed.
 */
export async function withScratch<T>(prefix: string, body: (procs: Procs, dir: string) => Promise<T>): Promise<T> {
  const procs = new Procs();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const onSignal = () => {
    void procs.killAll().finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body(procs, dir);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await procs.killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How long an fsync of the file at `path` takes (its dirty pages reaching the disk). */
export function timeFsync(path: string, flags: 'r' | 'r+' = 'r'): number {
  const t0 = performance.now();
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return performance.now() - t0;
}
