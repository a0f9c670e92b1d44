// Two network namespaces joined by a veth pair (10.213.7.1/24 and
// 10.213.7.2/24), created by the test that needs them and removed afterwards
// even when it fails; and, run as a script, a migration peer to start inside
// one of them:
//   node dist/test/helpers/netns.js boot CMDLINE VCPUS QMP_SOCKET
//   node dist/test/helpers/netns.js receive LISTEN_ADDR QMP_SOCKET
// A peer runs its guest (console on stdout) with a control socket offering the
// migration commands (registerMigrationCommands), as `xenkvm run --qmp` and
// `xenkvm receive --qmp` do once the control socket registers them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { XenMachine } from '../../src/xen/machine.js';
import { CommandRegistry } from '../../src/qmp/registry.js';
import { QmpServer } from '../../src/qmp/server.js';
import { registerMigrationCommands } from '../../src/migrate/live/qmp.js';
import { formatAddress, listenOn, parseAddress } from '../../src/migrate/live/address.js';
import { confirmRunning, receiveMachine, refuse, sendAck } from '../../src/migrate/live/destination.js';
import { GUEST_ELF } from './guest.js';

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
  } catch { /* best effort */ }
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
      } catch { /* not there */ }
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
    } catch { /* gone with its namespace */ }
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

const SELF = fileURLToPath(import.meta.url);

/** Starts a migration peer in namespace `ns`. */
export function startPeer(ns: string, args: string[]): Peer {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, SELF, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const t = setTimeout(() => reject(new Error(`peer in ${ns}: no ${re} in ${ms} ms; stderr:\n${err.slice(-2000)}`)), ms);
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

async function peerMain(argv: string[]): Promise<number> {
  const say = (s: string) => process.stderr.write(`peer: ${s}\n`);
  const io = { console: (b: Uint8Array) => process.stdout.write(b), log: (m: string) => say(m) };
  const [mode, a1, a2, a3] = argv;
  let machine: XenMachine;
  let confirm: (() => Promise<void>) | null = null;
  let qmpPath: string;
  if (mode === 'boot') {
    machine = XenMachine.boot({ elf: readFileSync(GUEST_ELF), elfName: 'guest.elf', cmdline: a1!, memBytes: 64 << 20, vcpus: Number(a2), ...io });
    qmpPath = a3!;
  } else {
    const listener = await listenOn(parseAddress(a1!, 'listen'));
    say(`waiting for a guest on ${formatAddress(listener.address)}`);
    const sock = await listener.accept();
    try {
      machine = (await receiveMachine(sock, { ...io, ack: (seq) => sendAck(sock, seq) })).machine;
    } catch (e) {
      await refuse(sock, (e as Error).message);
      sock.end();
      say(`receive failed: ${(e as Error).message}`);
      return 1;
    }
    confirm = () => machine.whenRunning().then(() => confirmRunning(sock)).then(() => void sock.end());
    qmpPath = a2!;
  }
  const registry = new CommandRegistry();
  let server: QmpServer | null = null;
  registerMigrationCommands(registry, machine, () => server);
  server = await QmpServer.listen({ path: qmpPath, registry });
  machine.start();
  if (confirm) await confirm().catch((e: Error) => machine.requestStop({ kind: 'fault', detail: `confirmation not delivered: ${e.message}` }));
  say('guest running');
  const outcome = await machine.waitForOutcome();
  await server.close();
  await machine.destroy();
  say(`outcome ${JSON.stringify(outcome)}`);
  return outcome.kind === 'quit' || (outcome.kind === 'shutdown' && outcome.reason === 'poweroff') ? 0 : 1;
}

if (process.argv[1] === SELF) {
  peerMain(process.argv.slice(2)).then((code) => (process.exitCode = code), (e) => {
    process.stderr.write(`peer: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 70;
  });
}
