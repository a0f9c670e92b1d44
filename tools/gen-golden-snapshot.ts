// Writes the golden snapshot of the current format version for this host's
// CPU type:
//   node dist/tools/gen-golden-snapshot.js fixtures/snapshots/v1.1-soak-16m-intel.xks
// A 16 MiB soak guest on 2 vCPUs, saved (compressed, to stay small) 2 s into
// a 6 s run, so a restore runs it to its end and the guest checks itself.
// Every format version adds its own files; old ones are never regenerated.
// A saved guest keeps the CPU features it started with, so a host lacking
// one of them refuses it (restore's host check): each version has one file
// per CPU type (-amd, -intel, -amd-nossbd: an AMD host without SSBD and
// STIBP), and the restore tests take those this host can run
// (test/helpers/golden.ts; CONTRIBUTING.md, "Golden files").
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { saveSnapshot } from '../src/migrate/snapshot/save.js';
import { XenMachine } from '../src/machine/machine.js';

const out = process.argv[2];
if (!out) {
  console.error('usage: gen-golden-snapshot OUT.xks');
  process.exit(2);
}
const elf = fileURLToPath(new URL('../../fixtures/guest/build/guest.elf', import.meta.url));
let text = '';
const m = XenMachine.boot({
  elf: readFileSync(elf),
  elfName: 'guest.elf',
  cmdline: 'soak 6s',
  memBytes: 16 << 20,
  vcpus: 2,
  console: (b) => {
    text += Buffer.from(b).toString('latin1');
  },
  log: () => {},
});
m.start();
while (!text.includes('soak: t=2s')) await new Promise((r) => setTimeout(r, 10));
await m.pause();
const summary = await saveSnapshot(m, out, { compress: true });
await m.destroy();
console.log(JSON.stringify(summary));
