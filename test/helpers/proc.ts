// `xenkvm` in a child process with its stdio piped, for tests that talk to
// a running guest's console: what it printed so far, waiting for a text,
// writing to its stdin, its exit status.  Never left behind: killed when
// the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './cli.js';

export interface XenkvmProcess {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when stdout (or stderr with `stream: 'err'`) from offset `from` on matches, rejects after `ms`. */
  waitFor(text: string | RegExp, ms: number, stream?: 'out' | 'err', from?: number): Promise<void>;
  write(text: string | Uint8Array): void;
  exit: Promise<number | null>;
}

export function startXenkvm(args: string[], opts: { stdin?: 'pipe' | 'ignore' } = {}): XenkvmProcess {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: [opts.stdin ?? 'pipe', 'pipe', 'pipe'] });
  const reap = (): void => void child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('close', () => process.off('exit', reap));
  let out = '';
  let err = '';
  let waiters: Array<() => void> = [];
  const changed = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    changed();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString('latin1');
    changed();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  void exit.then(changed);
  const waitFor = (text: string | RegExp, ms: number, stream: 'out' | 'err' = 'out', from = 0) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `timed out after ${ms} ms waiting for ${text} from xenkvm ${args.join(' ')};\nstdout:\n${out.slice(-1500)}\nstderr:\n${err.slice(-1500)}`,
            ),
          ),
        ms,
      );
      const check = () => {
        const s = (stream === 'out' ? out : err).slice(from);
        if (typeof text === 'string' ? s.includes(text) : text.test(s)) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return {
    child,
    out: () => out,
    err: () => err,
    waitFor,
    write: (t) => void child.stdin!.write(t),
    exit,
  };
}
