// `xenkvm demo` (npm start): the whole path on the bundled test guest.  It
// boots the soak guest (which checks itself for lost events, time going
// backwards and memory corruption), snapshots it, restores the snapshot in
// a new process, snapshots that one too, and diffs the two saved states.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.js';
import { EXIT } from './exit-codes.js';
import { defineCommand } from './command.js';

export const command = defineCommand({
  command: 'demo',
  describe: 'Boot the bundled test guest and run its self-test (what `npm start` does)',
  builder: (y) => y,
  run: () => demoCommand(),
});

export const GUEST_ELF = fileURLToPath(new URL('../../../fixtures/guest/build/guest.elf', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/xenkvm.js', import.meta.url));
const SOAK_SECONDS = 8;

const say = (line: string) => process.stdout.write(`xenkvm demo: ${line}\n`);
const lines = (tag: string) => {
  let partial = '';
  return (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) if (/^(soak|RESULT|guest:|VIOLATION)/.test(p)) process.stdout.write(`  ${tag} ${p}\n`);
  };
};
const lastStatus = (text: string) => [...text.matchAll(/soak: t=(\d+)s ticks=(\d+)/g)].at(-1);

async function waitFor(get: () => string, re: RegExp, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(get())) {
    if (Date.now() > end) throw new InputError(`demo: the guest did not print ${re} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What the demo needs, loaded when it runs (command.ts). */
const load = () =>
  Promise.all([
    import('node:child_process'),
    import('../migrate/snapshot/save.js'),
    import('../qmp/client.js'),
    import('../machine/machine.js'),
  ]).then(([childProcess, save, client, machine]) => ({ ...childProcess, ...save, ...client, ...machine }));
type Loaded = Awaited<ReturnType<typeof load>>;

/** `xenkvm diff A B --ignore-volatile` in a child process; its first lines, indented. */
async function showDiff({ spawn }: Loaded, a: string, b: string): Promise<void> {
  const diff = spawn(process.execPath, [BIN, 'diff', a, b, '--ignore-volatile'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let diffOut = '';
  diff.stdout.setEncoding('utf8').on('data', (d: string) => (diffOut += d));
  await new Promise((resolve) => diff.on('close', resolve));
  const diffLines = diffOut.trimEnd().split('\n');
  for (const l of diffLines.slice(0, 12)) process.stdout.write(`  ${l}\n`);
  if (diffLines.length > 12) process.stdout.write(`  ... (${diffLines.length - 12} more lines)\n`);
}

export async function demoCommand(): Promise<number> {
  const lib = await load();
  const { executeOnce, saveSnapshot, spawn, XenMachine } = lib;
  if (!existsSync(GUEST_ELF))
    throw new InputError(`test guest not built: run npm run build:guest (needs gcc and make)`);
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-demo-'));
  const a = join(dir, 'a.xks');
  const b = join(dir, 'b.xks');

  say(
    `1. booting the test guest (soak ${SOAK_SECONDS}s on 2 vCPUs: timer ticks, IPIs, interdomain events, a checksummed memory region)`,
  );
  let text = '';
  const print = lines('[original]');
  const m = XenMachine.boot({
    elf: readFileSync(GUEST_ELF),
    elfName: 'guest.elf',
    cmdline: `soak ${SOAK_SECONDS}s`,
    memBytes: 64 << 20,
    vcpus: 2,
    console: (bytes) => {
      const s = Buffer.from(bytes).toString('latin1');
      text += s;
      print(s);
    },
    log: (msg) => process.stderr.write(`xenkvm: ${msg}\n`),
  });
  let saved;
  try {
    m.start();
    await waitFor(() => text, /soak: t=2s/, 20000);
    await m.pause();
    saved = await saveSnapshot(m, a);
  } finally {
    await m.destroy();
  }
  const before = lastStatus(text);
  say(
    `2. snapshot ${a}: ${(saved.bytes / (1 << 20)).toFixed(1)} MiB in ${(saved.seconds * 1000).toFixed(0)} ms (${saved.dataPages} pages stored, ${saved.zeroPages} zero pages left out); the original process is gone`,
  );

  say('3. restoring it in a new process (xenkvm restore); the guest carries on where it was');
  const sock = join(dir, 'qmp.sock');
  const child = spawn(process.execPath, [BIN, 'restore', a, '--qmp', sock, '--quiet'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let restored = '';
  const printR = lines('[restored]');
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    restored += s;
    printR(s);
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await waitFor(() => restored, /soak: t=\d+s/, 20000);
  const res = (await executeOnce(sock, 'snapshot', { path: b, stop: true })) as { bytes: number };
  say(
    `4. snapshot of the restored guest ${b} (${(res.bytes / (1 << 20)).toFixed(1)} MiB), left paused; letting it finish`,
  );
  await executeOnce(sock, 'cont');
  const status = await exited;
  const after = lastStatus(restored);
  const clean = status === 0 && /RESULT: PASS/.test(restored) && !/VIOLATION/.test(text + restored);
  say(`5. xenkvm diff ${a} ${b} --ignore-volatile  (what the guest changed in between; clocks and TSC left out)`);
  await showDiff(lib, a, b);
  say(
    `6. the guest continued: ticks ${before?.[2] ?? '?'} at t=${before?.[1] ?? '?'}s before the snapshot, ${after?.[2] ?? '?'} at t=${after?.[1] ?? '?'}s after the restore; ${clean ? 'no violation, RESULT: PASS' : 'FAILED (see above)'}`,
  );
  say(`files kept in ${dir}: try  xenkvm inspect ${a}  or  xenkvm restore ${a}`);
  return clean ? EXIT.ok : EXIT.crash;
}
