// QEMU as the reference VMM of the snapshot bench: find (or install) Debian's
// qemu-system-x86, boot the same test guest ELF with the same fill, save it
// with `migrate` to a file and load it back with `-incoming`, all timed over
// QMP from this process.
import { execFileSync } from 'node:child_process';
import { statSync, readFileSync, existsSync } from 'node:fs';
import type { QmpClient } from '../../src/qmp/client.js';
import { connectWhenReady, type Procs, sleep, stop, tail, timeFsync, type Tracked, waitForText } from './procs.js';

export interface QemuFound {
  binary: string;
  version: string;
  /** How it was found: on PATH, or installed by this run. */
  how: 'found' | 'installed';
}

export type QemuDetect = { ok: true; qemu: QemuFound } | { ok: false; reason: string };

const BINARY = 'qemu-system-x86_64';

function version(): string | null {
  try {
    const out = execFileSync(BINARY, ['--version'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out.split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

/** Finds qemu-system-x86_64; as root, installs Debian's package when it is missing. */
export function detectQemu(log: (s: string) => void): QemuDetect {
  const v = version();
  if (v) return { ok: true, qemu: { binary: BINARY, version: v, how: 'found' } };
  if (process.getuid?.() !== 0)
    return {
      ok: false,
      reason: `${BINARY} is not installed and this is not root, so it cannot be installed (apt-get install qemu-system-x86)`,
    };
  log(`  ${BINARY} not found; installing Debian's qemu-system-x86 (apt-get, up to 3 minutes)`);
  try {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'qemu-system-x86'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 180_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return {
      ok: false,
      reason: `apt-get install qemu-system-x86 failed: ${tail(err.stderr?.toString() ?? err.message, 200)}`,
    };
  }
  const after = version();
  return after
    ? { ok: true, qemu: { binary: BINARY, version: after, how: 'installed' } }
    : { ok: false, reason: `apt-get installed qemu-system-x86 but ${BINARY} --version still fails` };
}

/**
 * The command line both sides of the comparison share.  `-cpu qemu64`:
 * `-cpu host` aborts on this PVM host (KVM refuses MSR 0x10a,
 * IA32_ARCH_CAPABILITIES); qemu64 has no pdpe1gb, which the guest does not
 * use anyway (1 GiB pages triple-fault under PVM).
 */
export function qemuArgs(o: {
  memMiB: number;
  elf: string;
  cmdline: string;
  log: string;
  qmp: string;
  incoming?: string;
}): string[] {
  const args = [
    '-accel',
    'kvm',
    '-machine',
    'pc',
    '-cpu',
    'qemu64',
    '-m',
    `${o.memMiB}M`,
    '-nographic',
    '-no-reboot',
    '-kernel',
    o.elf,
    '-append',
    o.cmdline,
    '-debugcon',
    `file:${o.log}`,
    '-qmp',
    `unix:${o.qmp},server=on,wait=off`,
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=4',
  ];
  if (o.incoming) args.push('-incoming', o.incoming);
  return args;
}

/** Checks once per run that `-cpu host` still fails here, so the note above stays true. */
export async function cpuHostFails(procs: Procs, binary: string, elf: string, dir: string): Promise<string> {
  const t = procs.spawn(
    binary,
    qemuArgs({ memMiB: 64, elf, cmdline: 'hello', log: `${dir}/cpu-host.log`, qmp: `${dir}/cpu-host.sock` }).map((a) =>
      a === 'qemu64' ? 'host' : a,
    ),
  );
  const timer = setTimeout(() => t.child.kill('SIGKILL'), 15_000);
  const code = await t.exited;
  clearTimeout(timer);
  const out = existsSync(`${dir}/cpu-host.log`) ? readFileSync(`${dir}/cpu-host.log`, 'utf8') : '';
  if (code !== 1 && /RESULT: PASS/.test(out)) return 'works (guest passed)';
  const first = (t.stderr.split('\n').find((l) => /error/i.test(l)) ?? t.stderr.split('\n')[0] ?? '').trim();
  return `fails (exit ${code}: ${first || 'no message'})`;
}

export interface QemuSave {
  /** stop → migrate → completed → cont, as seen over QMP (the VM is paused for all of it). */
  ms: number;
  /** QEMU's own figure: query-migrate total-time. */
  qemuTotalMs: number;
  /** fsync of the file afterwards: QEMU's exec:cat does not sync; xenkvm's snapshot does. */
  fsyncMs: number;
  bytes: number;
}

async function status(q: QmpClient): Promise<string> {
  const r = (await q.execute('query-status')) as { status?: string };
  return String(r.status);
}

/** Saves the running guest behind `q` into `file`: pause, save, resume, like `xenkvm snapshot`. */
export async function qemuSave(q: QmpClient, file: string): Promise<QemuSave> {
  const t0 = performance.now();
  await q.execute('stop');
  // exec: because QEMU 7.2 has no file: migration URI.  `cat` adds a pipe
  // hop; QEMU writes the same bytes to a socket or fd either way.
  await q.execute('migrate', { uri: `exec:cat > '${file.replace(/'/g, "'\\''")}'` });
  let info: Record<string, unknown> = {};
  let completedAt: number | undefined;
  for (;;) {
    info = (await q.execute('query-migrate')) as Record<string, unknown>;
    const s = String(info['status']);
    if (s === 'completed' && figuresIn(info, (completedAt ??= performance.now()))) break;
    if (s === 'failed' || s === 'cancelled')
      throw new Error(`QEMU migrate to file ${s}: ${String(info['error-desc'] ?? '')}`);
    if (performance.now() - t0 > 60_000) throw new Error(`QEMU migrate to file: still '${s}' after 60 s`);
    await sleep(2);
  }
  await q.execute('cont');
  const ms = performance.now() - t0;
  return { ms, qemuTotalMs: Number(info['total-time'] ?? NaN), fsyncMs: timeFsync(file), bytes: statSync(file).size };
}

export interface QemuRestore {
  /** From spawning QEMU to query-status answering "running". */
  ms: number;
  /** When the QMP socket first answered (greeting + capabilities). */
  qmpMs: number;
  /** Whether a `cont` was needed (QEMU autostarts after -incoming unless -S). */
  contIssued: boolean;
}

/**
 * Starts QEMU with `-incoming "exec:cat FILE"` and times spawn → running,
 * polling query-status over QMP (and issuing `cont` if the load finished in
 * a paused state); then quits it.
 */
export async function qemuRestore(
  procs: Procs,
  binary: string,
  o: { memMiB: number; elf: string; cmdline: string; file: string; log: string; qmp: string },
): Promise<QemuRestore> {
  const t0 = performance.now();
  const t = procs.spawn(binary, qemuArgs({ ...o, incoming: `exec:cat '${o.file.replace(/'/g, "'\\''")}'` }));
  let q: QmpClient | null = null;
  try {
    // No race to work around in QEMU (its monitor chardev is set up before it listens); one client at a time.
    q = await connectWhenReady(t, o.qmp, 30_000, 30_000);
    const qmpMs = performance.now() - t0;
    let contIssued = false;
    for (;;) {
      const s = await status(q);
      if (s === 'running') break;
      if (s === 'paused' || s === 'postmigrate' || s === 'prelaunch') {
        // Only once the incoming migration has finished is `cont` legal.
        const m = (await q.execute('query-migrate')) as Record<string, unknown>;
        if (m['status'] === 'completed' && !contIssued) {
          await q.execute('cont');
          contIssued = true;
        }
      } else if (s !== 'inmigrate' && s !== 'restore-vm') {
        throw new Error(`QEMU -incoming: unexpected status '${s}'; stderr: ${tail(t.stderr)}`);
      }
      if (performance.now() - t0 > 60_000) throw new Error(`QEMU -incoming: not running after 60 s (status '${s}')`);
      await sleep(1);
    }
    return { ms: performance.now() - t0, qmpMs, contIssued };
  } finally {
    const client = q;
    await stop(t, async () => client?.execute('quit', undefined, { timeoutMs: 3000 }));
    client?.close();
  }
}

/** Boots the fill guest under QEMU and returns once it printed its fill line. */
export async function qemuBoot(
  procs: Procs,
  binary: string,
  o: { memMiB: number; elf: string; cmdline: string; log: string; qmp: string },
): Promise<{ t: Tracked; q: QmpClient; fillLine: string; bootMs: number }> {
  const t0 = performance.now();
  const t = procs.spawn(binary, qemuArgs(o));
  const // No race to work around in QEMU (its monitor chardev is set up before it listens); one client at a time.
    q = await connectWhenReady(t, o.qmp, 30_000, 30_000);
  const read = () => (existsSync(o.log) ? readFileSync(o.log, 'utf8') : '');
  // SeaBIOS runs emulated on PVM (real mode), so QEMU's boot takes seconds.
  const m = await waitForText(t, read, /^fill:.*$/m, 90_000, 'QEMU guest fill line');
  return { t, q, fillLine: m[0], bootMs: performance.now() - t0 };
}

/** What `qemuLiveMigrate` measured; the figures are QEMU's own (query-migrate on the source). */
export interface QemuLiveMigration {
  /** total-time: from `migrate` until the source completed (the destination's load and start are not in it). */
  totalMs: number;
  /** downtime: from stopping the source VM until the source completed (the destination's start not included). */
  downtimeMs: number;
  setupMs: number;
  /** ram.transferred. */
  bytes: number;
  /** ram.dirty-sync-count: dirty-bitmap syncs, the one at set-up and the final one (paused) included. */
  syncs: number;
  mbps: number;
  normalPages: number;
  zeroPages: number;
  /** From sending `migrate` until this process saw 'completed' (polled). */
  wallMs: number;
  /** Host wall clock (ms since the epoch) just before `migrate` was sent: compares with QMP event timestamps. */
  startedAtEpochMs: number;
  /** null when QEMU converged on its own; else when the bench raised downtime-limit to make it finish. */
  forced: null | { afterMs: number; syncs: number; why: 'max-rounds' | 'timeout' };
  /** The last 'active' sample: what QEMU measured of the guest while migrating. */
  lastActive: { dirtyPagesRate: number; expectedDowntimeMs: number; syncs: number } | null;
}

/**
 * Whether a 'completed' query-migrate answer has QEMU's figures: 7.2 sets the
 * state a moment before it fills in total-time and downtime (both read 0
 * then; seen once in five runs), so ask again, for at most a second after
 * `completedAt`.
 */
function figuresIn(info: Record<string, unknown>, completedAt: number): boolean {
  return Number(info['total-time'] ?? 0) > 0 || performance.now() - completedAt > 1000;
}

/**
 * Live-migrates the guest behind the source QMP client `q` to `uri` (a QEMU
 * started with `-incoming uri`): unlimited bandwidth, `downtime-limit` =
 * `downtimeLimitMs`, then `migrate` and query-migrate polled every `pollMs`
 * until completed.  Like xenkvm's `--on-timeout pause`, after more than
 * `maxRounds` dirty syncs or `forceAfterMs` it raises downtime-limit to
 * QEMU's maximum so the migration finishes (with the downtime that takes);
 * after `timeoutMs` it cancels and throws.
 */
export async function qemuLiveMigrate(
  q: QmpClient,
  uri: string,
  o: { downtimeLimitMs: number; maxRounds: number; forceAfterMs: number; timeoutMs: number; pollMs?: number },
): Promise<QemuLiveMigration> {
  // max-bandwidth: QEMU 7.2 defaults to 32 MiB/s, which would time the throttle, not QEMU.
  await q.execute('migrate-set-parameters', { 'downtime-limit': o.downtimeLimitMs, 'max-bandwidth': 2 ** 50 });
  const t0 = performance.now();
  const startedAtEpochMs = Date.now();
  await q.execute('migrate', { uri });
  let forced: QemuLiveMigration['forced'] = null;
  let lastActive: QemuLiveMigration['lastActive'] = null;
  let info: Record<string, unknown>;
  let completedAt: number | undefined;
  for (;;) {
    info = (await q.execute('query-migrate')) as Record<string, unknown>;
    const s = String(info['status']);
    const elapsed = performance.now() - t0;
    if (s === 'completed' && figuresIn(info, (completedAt ??= performance.now()))) break;
    if (s === 'failed' || s === 'cancelled')
      throw new Error(`QEMU migrate ${s}: ${String(info['error-desc'] ?? '(no error-desc)')}`);
    const ram = (info['ram'] ?? {}) as Record<string, unknown>;
    const syncs = Number(ram['dirty-sync-count'] ?? 0);
    if (s === 'active')
      lastActive = {
        dirtyPagesRate: Number(ram['dirty-pages-rate'] ?? NaN),
        expectedDowntimeMs: Number(info['expected-downtime'] ?? NaN),
        syncs,
      };
    if (forced === null && (syncs > o.maxRounds || elapsed > o.forceAfterMs)) {
      forced = { afterMs: elapsed, syncs, why: syncs > o.maxRounds ? 'max-rounds' : 'timeout' };
      // QEMU's ceiling (MAX_MIGRATE_DOWNTIME_SECONDS = 2000 s): completes at the next check.
      await q.execute('migrate-set-parameters', { 'downtime-limit': 2_000_000 });
    }
    if (elapsed > o.timeoutMs) {
      await q.execute('migrate_cancel').catch(() => undefined);
      throw new Error(
        `QEMU migrate: still '${s}' after ${Math.round(elapsed / 1000)} s (${syncs} dirty syncs); cancelled`,
      );
    }
    await sleep(o.pollMs ?? 5);
  }
  const wallMs = performance.now() - t0;
  const ram = (info['ram'] ?? {}) as Record<string, unknown>;
  return {
    totalMs: Number(info['total-time'] ?? NaN),
    downtimeMs: Number(info['downtime'] ?? NaN),
    setupMs: Number(info['setup-time'] ?? NaN),
    bytes: Number(ram['transferred'] ?? NaN),
    syncs: Number(ram['dirty-sync-count'] ?? NaN),
    mbps: Number(ram['mbps'] ?? NaN),
    normalPages: Number(ram['normal'] ?? NaN),
    zeroPages: Number(ram['duplicate'] ?? NaN),
    wallMs,
    startedAtEpochMs,
    forced,
    lastActive,
  };
}
