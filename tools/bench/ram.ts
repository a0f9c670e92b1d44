// RAM encoding benchmarks: zero-page detection strategies, CRC-32 (node:zlib
// against the native helper, and per call for format.ts's threshold), and
// encoding a 256 MiB guest image (25% random non-zero pages) to a snapshot
// file, uncompressed and with fflate at levels 1 and 6; then reading it back.
// The constants in src/migrate/ram/{zero,write}.ts and
// src/migrate/stream/{byte-sink,format}.ts name this bench; its results are
// in docs/benchmarks.md.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import {
  applyRamRecord,
  listRamRuns,
  openSnapshot,
  PAGE_SIZE,
  writeRam,
  writeSnapshotFile,
} from '../../src/migrate/index.js';
import { nativeCrc32, nativeCrc32Error } from '../../src/migrate/native.js';
import { ZERO_STRATEGIES } from '../../src/migrate/ram/zero.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

function image(bytes: number, share: number, seed: number): Uint8Array {
  const ram = new Uint8Array(bytes);
  ram.fill(1);
  ram.fill(0); // touch every page: untouched memory maps the kernel's one zero page and reads from cache
  const words = new Uint32Array(ram.buffer);
  let x = seed;
  const next = (): number => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  for (let p = 0; p < bytes / PAGE_SIZE; p++) {
    if (next() / 2 ** 32 >= share) continue;
    for (let w = p * 1024; w < (p + 1) * 1024; w++) words[w] = next();
  }
  return ram;
}

function best(runs: number, f: () => void): number {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    f();
    min = Math.min(min, performance.now() - t);
  }
  return min / 1000;
}

/**
 * CRC-32, node:zlib against the native helper: over the whole image (memory
 * bound), over one 2 MiB batch as the writer and reader see it (in cache,
 * every implementation the CPU has), and the cost of one call for short
 * inputs, which sets NATIVE_CRC32_MIN_BYTES in src/migrate/stream/format.ts.
 */
function benchCrc32(image: Uint8Array): void {
  const native = nativeCrc32();
  const gib = (bytes: number, s: number): string => `${(bytes / GiB / s).toFixed(1).padStart(5)} GiB/s`;
  if (!native) {
    console.log(
      `  crc32 ${image.length / MiB} MiB image: node:zlib ${gib(
        image.length,
        best(3, () => zlibCrc32(image)),
      )}; native helper not loaded (${nativeCrc32Error()})`,
    );
    return;
  }
  const z = best(3, () => zlibCrc32(image));
  const n = best(3, () => native.crc32(0, image, image.length));
  console.log(
    `  crc32 ${image.length / MiB} MiB image           node:zlib ${gib(image.length, z)} (${(z * 1000).toFixed(0)} ms)   native ${native.impl} ${gib(image.length, n)} (${(n * 1000).toFixed(0)} ms)`,
  );
  const batch = image.subarray(0, 2 * MiB);
  const reps = 64;
  const rate = (f: () => void): string =>
    gib(
      batch.length * reps,
      best(3, () => {
        for (let i = 0; i < reps; i++) f();
      }),
    );
  const rates = Object.entries(native.variants).map(([name, f]) => `${name} ${rate(() => f(0, batch, batch.length))}`);
  console.log(
    `  crc32 2 MiB batch (in cache)   node:zlib ${rate(() => zlibCrc32(batch))}   native ${rates.join('   ')}`,
  );
  const calls = 20_000;
  const perCall = [16, 32, 64, 256, 4096].map((len) => {
    const b = image.subarray(64, 64 + len);
    const ns = (f: () => void): string =>
      (
        (best(5, () => {
          for (let i = 0; i < calls; i++) f();
        }) *
          1e9) /
        calls
      ).toFixed(0);
    return `${len} B ${ns(() => zlibCrc32(b))}/${ns(() => native.crc32(0, b, len))}`;
  });
  console.log(`  crc32 ns per call, node:zlib/native: ${perCall.join(', ')}`);
}

export async function benchRam(): Promise<void> {
  const size = 256 * MiB;
  const pages = size / PAGE_SIZE;
  const mixed = image(size, 0.25, 0x1234567);
  const zero = image(size, 0, 1);
  console.log(`ram: ${size / MiB} MiB image, 25% random non-zero pages (zero detection: best of 3)`);
  for (const [name, make] of Object.entries(ZERO_STRATEGIES)) {
    const rates = [mixed, zero].map((buf) => {
      const t = make(buf);
      return (
        size /
        GiB /
        best(3, () => {
          for (let p = 0; p < pages; p++) t(p);
        })
      );
    });
    console.log(
      `  zero detection ${name.padEnd(9)} 25% non-zero ${rates[0]!.toFixed(1).padStart(6)} GiB/s   all zero ${rates[1]!.toFixed(1).padStart(6)} GiB/s`,
    );
  }
  benchCrc32(mixed);

  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-bench-'));
  try {
    const header = { producer: 'xenkvm bench', machine: { memBytes: size }, schemas: {} };
    const cases: Array<{ label: string; compress: boolean; level?: 1 | 6; ram: Uint8Array }> = [
      { label: 'uncompressed', compress: false, ram: mixed },
      { label: 'deflate level 1', compress: true, level: 1, ram: mixed },
    ];
    // One unmeasured pass warms the JIT and the allocator, as a long-running VMM would be.
    await writeSnapshotFile(
      join(dir, 'warm'),
      header,
      (w) => writeRam(w, mixed.subarray(0, 32 * MiB)).then(() => undefined),
      { sync: false },
    );
    for (const c of cases) {
      const path = join(dir, 'snap');
      for (const sync of [false, true]) {
        let encoded = 0;
        const t0 = performance.now();
        await writeSnapshotFile(
          path,
          header,
          async (w) => {
            await writeRam(w, c.ram, { compress: c.compress, level: c.level ?? 1 });
            encoded = performance.now();
          },
          { sync },
        );
        const total = performance.now() - t0;
        const fileBytes = statSync(path).size;
        console.log(
          `  encode to file ${c.label.padEnd(16)} ${sync ? 'with fsync   ' : 'without fsync'} ${(size / MiB / (total / 1000)).toFixed(0).padStart(5)} MB/s of guest RAM` +
            ` (${total.toFixed(0)} ms, of which encoding ${(encoded - t0).toFixed(0)} ms), file ${(fileBytes / MiB).toFixed(1)} MiB`,
        );
        if (c.compress) break; // deflate dominates; fsync adds the same as uncompressed
      }
      const out = new Uint8Array(size);
      const t1 = performance.now();
      const f = await openSnapshot(path);
      for await (const r of f) if (r.kind === 'ram') applyRamRecord(out, r);
      await f.close();
      const lt = performance.now() - t1;
      const t2 = performance.now();
      const map = c.compress ? null : await listRamRuns(path, pages);
      const mt = performance.now() - t2;
      console.log(
        `    load by copy ${lt.toFixed(0)} ms` +
          (map ? `; listRamRuns ${mt.toFixed(0)} ms, ${map.runs.length} runs` : ''),
      );
      if (!Buffer.from(out).equals(Buffer.from(c.ram))) throw new Error(`bench ${c.label}: restored RAM differs`);
      rmSync(path);
    }
    // Level choice on realistic content: random pages do not compress at any level, so use 32 MiB of
    // the node executable (machine code and data), 25% of the pages, the rest zero.
    const exe = readFileSync(process.execPath);
    const real = image(32 * MiB, 0, 1);
    for (let p = 0, src = 0; p < real.length / PAGE_SIZE && src + PAGE_SIZE <= exe.length; p += 4, src += PAGE_SIZE) {
      real.set(exe.subarray(src, src + PAGE_SIZE), p * PAGE_SIZE);
    }
    for (const level of [1, 3, 6] as const) {
      const path = join(dir, 'snap');
      const t0 = performance.now();
      await writeSnapshotFile(path, header, (w) => writeRam(w, real, { compress: true, level }).then(() => undefined), {
        sync: false,
      });
      const dt = (performance.now() - t0) / 1000;
      console.log(
        `  deflate level ${level}, 32 MiB, 25% pages of the node executable: ${(32 / dt).toFixed(0)} MB/s of guest RAM, file ${(statSync(path).size / MiB).toFixed(2)} MiB (raw 8.00)`,
      );
      rmSync(path);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
