// Two network namespaces joined by a veth pair (10.213.7.1/24 and
// 10.213.7.2/24), created by the test that needs them and removed afterwards
// even when it fails; and migration peers inside them: the real command
// lines, `xenkvm run ... --qmp` for the first and `xenkvm receive --qmp` for
// each later one, their guest console on stdout.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './cli.js';
import { GUEST_ELF } from './paths.js';

export const NS_ADDR = ['10.213.7.1', '10.213.7.2'] as const;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Why namespaces cannot be made here, or null. */
export function netnsSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root (ip netns needs CAP_SYS_ADMIN)';
  const probe = `xkprobe${process.pid}`;
  try {
    ip(['netns', 'add', probe]);
  } catch (e) {
    return `ip netns add is not permitted here: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`;
  }
  try {
    ip(['netns', 'del', probe]);
  } catch {
    /* best effort */
  }
  return null;
}

export interface NetnsPair {
  readonly names: readonly [string, string];
  /** Removes both namespaces (and with them the veth pair).  Idempotent. */
  cleanup(): void;
}

export function createNetnsPair(): NetnsPair {
  const tag = `${process.pid % 100000}`;
  const names = [`xkmig-a-${tag}`, `xkmig-b-${tag}`] as const;
  const veth = [`xkva${tag}`, `xkvb${tag}`];
  let done = false;
  const cleanup = (): void => {
    if (done) return;
    done = true;
    for (const n of names) {
      try {
        ip(['netns', 'del', n]);
      } catch {
        /* not there */
      }
    }
  };
  try {
    for (const n of names) ip(['netns', 'add', n]);
    ip(['link', 'add', veth[0]!, 'type', 'veth', 'peer', 'name', veth[1]!]);
    for (let i = 0; i < 2; i++) {
      ip(['link', 'set', veth[i]!, 'netns', names[i]!]);
      ip(['-n', names[i]!, 'addr', 'add', `${NS_ADDR[i]}/24`, 'dev', veth[i]!]);
      ip(['-n', names[i]!, 'link', 'set', veth[i]!, 'up']);
      ip(['-n', names[i]!, 'link', 'set', 'lo', 'up']);
    }
  } catch (e) {
    cleanup();
    try {
      ip(['link', 'del', veth[0]!]);
    } catch {
      /* gone with its namespace */
    }
    throw e;
  }
  return { names, cleanup };
}

export interface Peer {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when stderr matches. */
  waitErr(re: RegExp, ms: number): Promise<void>;
  exit: Promise<number | null>;
}

/** What a peer runs: the source boots the soak guest, every later peer receives it. */
export type PeerRole =
  { kind: 'boot'; cmdline: string; vcpus: number; qmp: string } | { kind: 'receive'; listen: string; qmp: string };

/** `xenkvm run` or `xenkvm receive` (the real command line) in namespace `ns`. */
export function startPeer(ns: string, role: PeerRole): Peer {
  const args =
    role.kind === 'boot'
      ? ['run', GUEST_ELF, '--mem', '64M', '--vcpus', String(role.vcpus), '--cmdline', role.cmdline, '--qmp', role.qmp]
      : ['receive', '--listen', role.listen, '--qmp', role.qmp];
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => {
    err += d;
    for (const w of waiters.splice(0)) w();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waitErr = (re: RegExp, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`peer in ${ns}: no ${re} in ${ms} ms; stderr:\n${err.slice(-2000)}`)),
        ms,
      );
      const check = () => {
        if (re.test(err)) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { child, out: () => out, err: () => err, waitErr, exit };
}
