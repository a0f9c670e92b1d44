// The fuzzer's seed streams, made once per build and kept (a cache: the
// golden files in fixtures/snapshots/ are seeds too, but a restore of them
// runs the guest for 4 s, and a host of the other CPU vendor refuses them).
//
//   node dist/tools/fuzz/make-seeds.js DIR
//
// soak-2cpu.xks        16 MiB, 2 vCPUs, `soak 1s` saved ~0.8 s in: a restore
//                      runs the guest ~0.2 s to its RESULT line.  Raw pages,
//                      aligned: the lazy restore path.
// soak-2cpu-deflate.xks  the same guest, compressed: the eager path, deflated batches.
// soak-1cpu.xks        one vCPU.
// small.xks            soak-2cpu's header and sections with a few pages of RAM
//                      written by writeRam (raw and deflated): quick to inspect and diff.
// *.mig                each .xks above but small.xks in migration order (RAM
//                      first, sections last), for receive.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XenMachine } from '../../src/machine/machine.js';
import { saveSnapshot } from '../../src/migrate/snapshot/save.js';
import { memorySink } from '../../src/migrate/stream/byte-sink.js';
import { RecordType } from '../../src/migrate/stream/format.js';
import { StreamWriter } from '../../src/migrate/stream/writer.js';
import { writeRam } from '../../src/migrate/ram/write.js';
import { buildStream, decodeMsgpack, parseStream } from './stream.js';

const ELF = fileURLToPath(new URL('../../../fixtures/guest/build/guest.elf', import.meta.url));

/** Saves a `soak 1s` guest `waitMs` after its start; false if it ended first (a slow host). */
async function soakSnapshotAt(path: string, vcpus: number, compress: boolean, waitMs: number): Promise<boolean> {
  let text = '';
  const m = XenMachine.boot({
    elf: readFileSync(ELF),
    elfName: 'guest.elf',
    cmdline: 'soak 1s',
    memBytes: 16 << 20,
    vcpus,
    console: (b) => {
      text += Buffer.from(b).toString('latin1');
    },
    log: () => {},
  });
  try {
    m.start();
    const banner = `soak: vcpu ${vcpus - 1}: timer port`;
    const t0 = Date.now();
    while (!text.includes(banner)) {
      if (Date.now() - t0 > 20_000) throw new Error(`soak guest did not start; console:\n${text}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, waitMs));
    await m.pause();
    if (/soak: t=|RESULT/.test(text)) return false;
    await saveSnapshot(m, path, { compress });
    return true;
  } finally {
    await m.destroy();
  }
}

/** As late as the host allows: the less guest time is left, the faster a restore case ends. */
async function soakSnapshot(path: string, vcpus: number, compress: boolean): Promise<void> {
  for (const ms of [800, 600, 300]) if (await soakSnapshotAt(path, vcpus, compress, ms)) return;
  throw new Error('the soak guest ends before it can be saved');
}

/** The same records with every SECTION moved after the RAM records: the order a migration sends. */
export function migrationOrder(bytes: Uint8Array): Uint8Array {
  const s = parseStream(bytes);
  const head = s.records.filter((r) => r.type === RecordType.HEADER);
  const sections = s.records.filter((r) => r.type === RecordType.SECTION);
  const end = s.records.filter((r) => r.type === RecordType.END);
  const rest = s.records.filter(
    (r) => r.type !== RecordType.HEADER && r.type !== RecordType.SECTION && r.type !== RecordType.END,
  );
  return buildStream({ preamble: s.preamble, records: [...head, ...rest, ...sections, ...end] });
}

/** soak-2cpu's header and sections with 8 pages of RAM: 4 raw, 4 deflated. */
async function small(from: Uint8Array): Promise<Uint8Array> {
  const s = parseStream(from);
  const header = decodeMsgpack(s.records[0]!.body) as { producer: string; machine: unknown; schemas: never };
  const sink = memorySink();
  const w = await StreamWriter.start(sink, header, { alignPages: false });
  for (const r of s.records) {
    if (r.type !== RecordType.SECTION) continue;
    const sec = decodeMsgpack(r.body) as { name: string; instance: number; version: number; payload: unknown };
    await w.writeSection(sec);
  }
  const ram = new Uint8Array(16 * 4096);
  for (let i = 0; i < ram.length; i++) ram[i] = (i * 31) & 0xff;
  const bitmap = new Uint8Array(2);
  bitmap[0] = 0x0f;
  await writeRam(w, ram, { bitmap, batchPages: 2 });
  bitmap[0] = 0xf0;
  await writeRam(w, ram, { bitmap, batchPages: 2, compress: true });
  await w.end();
  return sink.bytes();
}

export async function makeSeeds(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const put = (name: string, bytes: Uint8Array): void => {
    writeFileSync(join(dir, `${name}.tmp`), bytes);
    renameSync(join(dir, `${name}.tmp`), join(dir, name));
  };
  for (const [name, vcpus, compress] of [
    ['soak-2cpu', 2, false],
    ['soak-2cpu-deflate', 2, true],
    ['soak-1cpu', 1, false],
  ] as const) {
    const path = join(dir, `${name}.xks`);
    await soakSnapshot(path, vcpus, compress);
    put(`${name}.mig`, migrationOrder(readFileSync(path)));
  }
  put('small.xks', await small(readFileSync(join(dir, 'soak-2cpu.xks'))));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: make-seeds DIR');
    process.exit(2);
  }
  await makeSeeds(dir);
}
