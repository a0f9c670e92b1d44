// `xenkvm receive` in a child process, for migration tests: its address
// once it listens, its output, its exit status.
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './cli.js';

export interface Receiver {
  child: ChildProcess;
  /** The address it listens on, e.g. tcp:127.0.0.1:40123. */
  address: Promise<string>;
  out(): string;
  err(): string;
  exit: Promise<number | null>;
}

export interface ReceiverOptions {
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  pskFile?: string;
  /** Its control socket (--qmp). */
  qmp?: string;
}

const FLAGS: Record<Exclude<keyof ReceiverOptions, 'listen'>, string> = {
  tlsCert: '--tls-cert',
  tlsKey: '--tls-key',
  tlsCa: '--tls-ca',
  pskFile: '--psk-file',
  qmp: '--qmp',
};

export function startReceiver(opts: ReceiverOptions = {}): Receiver {
  const args = [BIN, 'receive', '--listen', opts.listen ?? 'tcp:127.0.0.1:0'];
  for (const [key, flag] of Object.entries(FLAGS) as Array<[keyof typeof FLAGS, string]>) {
    const v = opts[key];
    if (v !== undefined) args.push(flag, v);
  }
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // A destination waits for another source after a failed one: never leave one behind.
  const reap = (): void => void child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('close', () => process.off('exit', reap));
  let out = '';
  let err = '';
  let onAddr: (a: string) => void = () => {};
  const address = new Promise<string>((resolve) => (onAddr = resolve));
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    err += d;
    const m = /waiting for a guest on (\S+)/.exec(err);
    if (m) onAddr(m[1]!);
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, address, out: () => out, err: () => err, exit };
}
