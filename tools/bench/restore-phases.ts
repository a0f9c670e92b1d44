// Child process of the snapshot bench: where the time of `xenkvm restore`
// goes, measured from outside src/ by running the same library calls the
// CLI makes, one phase at a time, in a fresh process (as restore runs).
//   node dist/tools/bench/restore-phases.js FILE MEMBYTES
// prints one JSON line of phase times in ms.
//
// The phases overlap with what restoreCheckpoint does internally, so the
// split is by subtraction: restore = create + read/verify + copy/state.
// `create` and `read` run first on their own (a machine created and
// destroyed, the file read through without applying), which warms the kernel
// for the full restore that follows; the full restore is therefore a lower
// bound of what the CLI pays.

const bootMs = performance.now(); // since the process's time origin: node's own start-up

// Imports, in the order that isolates each big dependency: what each one
// costs on its own, then xenkvm's library, then the CLI on top of it.
const lap = (() => {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const d = now - last;
    last = now;
    return d;
  };
})();
const t0 = performance.now();
await import('koffi');
const importKoffiMs = lap();
await import('yargs');
const importYargsMs = lap();
const { restoreCheckpoint } = await import('../../src/migrate/checkpoint.js');
const { openSnapshot } = await import('../../src/migrate/index.js');
const { XenMachine } = await import('../../src/xen/machine.js');
const importLibMs = lap();
// What `xenkvm restore` loads on top: the CLI and the control socket.
await import('../../src/cli/main.js');
await import('../../src/cli/control-socket.js');
const importCliMs = lap();
const importMs = performance.now() - t0;

const [file, memText] = process.argv.slice(2);
if (!file || !memText) {
  process.stderr.write('usage: restore-phases FILE MEMBYTES\n');
  process.exit(2);
}
const memBytes = Number(memText);
const quiet = { console: () => {}, log: () => {} };

const c0 = performance.now();
const probe = XenMachine.create({ memBytes, vcpus: 1, ...quiet });
const createMs = performance.now() - c0;
await probe.destroy();

// Reads and CRC-checks every record, RAM pages included, without applying.
const r0 = performance.now();
const snap = await openSnapshot(file);
let records = 0;
for await (const _rec of snap) records++;
await snap.close();
const readMs = performance.now() - r0;

const f0 = performance.now();
const m = await restoreCheckpoint(file, quiet);
const restoreMs = performance.now() - f0;

// Until the vCPU worker reports RUNNING: what query-status waits for.
const s0 = performance.now();
m.start();
while (m.status !== 'running') await new Promise((r) => setTimeout(r, 0));
const startMs = performance.now() - s0;
await m.destroy();

process.stdout.write(`${JSON.stringify({ bootMs, importMs, importKoffiMs, importYargsMs, importLibMs, importCliMs, createMs, readMs, restoreMs, startMs, records })}\n`);
