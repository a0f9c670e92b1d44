// A real Xen guest nobody here wrote: Debian's GRUB for Xen PVH, built with
// grub-mkimage and driven through its PV console.  The `grub>` prompt
// appears, echo, set and lsmod are answered; GRUB is snapshotted at its
// prompt and restored in a new process, where a typed command is answered;
// then it is migrated over loopback and answers there (typed through
// `xenkvm console` on the destination's socket).  GRUB runs in ring 0,
// which this host's KVM emulates slowly: the times are printed.
//
// What GRUB calls, in order (grub-core/kern/i386/xen/pvh.c, kern/xen/init.c):
// CPUID leaves, the hypercall page MSR, XENMEM_memory_map, HVM params
// CONSOLE_PFN/EVTCHN and STORE_PFN/EVTCHN, XENMEM_add_to_physmap of grant
// table frame 0 and of shared_info at the first frames outside its memory
// map (past the end of RAM: a hole), XENMEM_set_memory_map, GNTTABOP
// set_version and setup_table (results unused), then the console, and
// xenstore (a directory read of device/vbd, waited for without end).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkipReason } from '../helpers/kvm.js';
import { buildGrub, grubMissing, GRUB_EARLY_LINE } from '../helpers/grub.js';
import { startXenkvm, type XenkvmProcess } from '../helpers/proc.js';
import { tempDir } from '../helpers/tmp.js';
import { withTimeout } from '../helpers/async.js';
import { xenkvmSync } from '../helpers/cli.js';

const skip = kvmSkipReason() ?? grubMissing();
if (skip) console.log(`  skip GRUB: ${skip}`);
const kvmTest = skip ? test.skip : test;

const { dir, cleanup } = tempDir('grub');
const p = (n: string) => join(dir, n);
const alive: XenkvmProcess[] = [];
const start = (args: string[]) => {
  const x = startXenkvm(args);
  alive.push(x);
  return x;
};
test.after(() => {
  for (const x of alive.splice(0)) x.child.kill('SIGKILL');
  cleanup();
});

/** GRUB's boot, slow in ring 0 here; commands take under a second each. */
const PROMPT_MS = 180_000;
const COMMAND_MS = 30_000;

async function socketUp(path: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What GRUB's own message before its prompt says is missing from the platform. */
function missingPiece(out: string): string {
  if (out.includes('Could not get memory map')) return 'XENMEM_memory_map';
  if (out.includes('Memory_op hypercall failed'))
    return 'XENMEM_add_to_physmap of grant table frame 0 and of shared_info at frames outside RAM (past its end)';
  if (out.includes('Could not get parameter')) return 'HVMOP_get_param';
  return 'xenstore served on its ring (GRUB reads device/vbd and waits for the answer)';
}

/** Types `cmd` and Enter into `x` (GRUB's console), waits for `want` and the next prompt; returns the ms taken. */
async function type(x: XenkvmProcess, cmd: string, want: string | RegExp): Promise<number> {
  const at = x.out().length;
  const t0 = Date.now();
  x.write(`${cmd}\r`);
  await x.waitFor(want, COMMAND_MS, 'out', at);
  await x.waitFor(/[\s\S]*grub> $/, COMMAND_MS, 'out', at);
  return Date.now() - t0;
}

kvmTest('GRUB for Xen PVH: prompt, echo, set, lsmod; snapshot at the prompt, restore, migrate', async () => {
  const elf = buildGrub(dir);
  const a = p('a.sock');
  const t0 = Date.now();
  const g = start(['run', elf, '--qmp', a]);
  await g.waitFor(/grub> |System halted!/, PROMPT_MS).catch((e: Error) => {
    // Without an answer from xenstore GRUB waits for ever after its console is up.
    throw new Error(`${e.message}\n(no prompt: ${missingPiece(g.out())})`);
  });
  if (!g.out().includes('grub> '))
    assert.unreachable(
      `GRUB stopped before its prompt: ${JSON.stringify(g.out().slice(-200))}: ${missingPiece(g.out())}`,
    );
  console.log(`  GRUB: boot to prompt ${Date.now() - t0} ms (process start included)`);
  assert.ok(g.out().includes(GRUB_EARLY_LINE), 'the early config ran');
  const times = [
    await type(g, 'echo hello from xenkvm', '\rhello from xenkvm\n'),
    await type(g, 'set answer=42', 'grub> '),
    await type(g, 'echo answer is $answer', '\ranswer is 42\n'),
    await type(g, 'lsmod', /Name\s+Ref Count\s+Dependencies[\s\S]*\rminicmd\s[\s\S]*\recho\s[\s\S]*\rnormal\s/),
  ];
  console.log(`  GRUB: echo, set, echo, lsmod answered in ${times.join(', ')} ms`);

  const file = p('grub.xks');
  await socketUp(a);
  const snap = xenkvmSync(['snapshot', '--qmp', a, '-o', file, '--stop']);
  assert.is(snap.status, 0, snap.stderr);
  assert.is(xenkvmSync(['ctl', a, 'quit']).status, 0);
  await withTimeout(g.exit, 15_000, 'GRUB run ends on quit');
  const inspect = xenkvmSync(['inspect', file, '-s', 'xen_console']);
  assert.match(inspect.stdout, /answer is 42/, inspect.stdout);

  const b = p('b.sock');
  const t1 = Date.now();
  const r = start(['restore', file, '--qmp', b]);
  const restoredMs = await type(r, 'echo restored $answer', '\rrestored 42\n');
  console.log(`  GRUB: restored, a command answered ${Date.now() - t1} ms after the restore began (${restoredMs} ms)`);

  const c = p('c.sock');
  const recv = start(['receive', '--listen', 'tcp:127.0.0.1:0', '--qmp', c]);
  await recv.waitFor(/waiting for a guest on (\S+)/, 15_000, 'err');
  const addr = /waiting for a guest on (\S+)/.exec(recv.err())![1]!;
  await socketUp(b);
  const m = xenkvmSync(['migrate', '--qmp', b, '--to', addr]);
  assert.is(m.status, 0, m.stderr);
  await withTimeout(r.exit, 15_000, 'the source ends after the migration');
  await socketUp(c);
  const con = start(['console', c]);
  await con.waitFor('restored 42', 15_000);
  const migratedMs = await type(con, 'echo migrated $answer', '\rmigrated 42\n');
  console.log(`  GRUB: migrated, a command typed through xenkvm console answered in ${migratedMs} ms`);
  assert.is(xenkvmSync(['ctl', c, 'quit']).status, 0);
  await withTimeout(recv.exit, 15_000, 'destination ends on quit');
});

test.run();
