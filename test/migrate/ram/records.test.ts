// RAM records: zero pages elided, raw data page-aligned in files and exactly
// where listRamRuns says, compression, dirty bitmaps, hostile page numbers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  applyRamRecord,
  listRamRuns,
  openSnapshot,
  PAGE_SIZE,
  StreamReader,
  StreamWriter,
  writeRam,
  writeSnapshotFile,
} from '../../../src/migrate/index.js';
import type { RamPagesRecord } from '../../../src/migrate/index.js';
import { ZERO_STRATEGIES } from '../../../src/migrate/ram/zero.js';
import { HEADER, makeRam, memorySink, SECTIONS } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';
import { Readable } from 'node:stream';

const PAGES = 2048; // 8 MiB: four full batches and a partial one at 25%

test('snapshot: zero pages are not stored; file holds only non-zero pages', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const { ram, nonZero } = makeRam(PAGES, 0.25, 3);
    const path = join(dir, 's');
    let stats = { scanned: 0, dataPages: 0, zeroPages: 0, dataBytes: 0 };
    await writeSnapshotFile(path, HEADER, async (w) => {
      stats = await writeRam(w, ram);
    });
    assert.is(stats.scanned, PAGES);
    assert.is(stats.dataPages, nonZero.length);
    assert.is(stats.zeroPages, PAGES - nonZero.length);
    const size = statSync(path).size;
    assert.ok(
      size < (nonZero.length + 16) * PAGE_SIZE,
      `file of ${size} bytes holds little beyond ${nonZero.length} pages`,
    );
    assert.ok(size >= nonZero.length * PAGE_SIZE);
  } finally {
    cleanup();
  }
});

test('uncompressed file: page data is page-aligned and runs point at the right bytes', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const { ram, nonZero } = makeRam(PAGES, 0.25, 9);
    const path = join(dir, 's');
    await writeSnapshotFile(path, HEADER, async (w) => {
      await w.writeSection(SECTIONS[0]!); // an odd-sized record before RAM shifts the alignment
      await writeRam(w, ram, { batchPages: 100 });
      await w.writeSection(SECTIONS[2]!);
    });
    const map = await listRamRuns(path, PAGES);
    assert.is(map.unmappableBatches, 0);
    const covered = new Set<number>();
    const fd = openSync(path, 'r');
    const page = new Uint8Array(PAGE_SIZE);
    try {
      for (const run of map.runs) {
        assert.ok(run.fileOffset !== null);
        assert.is(run.fileOffset % PAGE_SIZE, 0, `run at gpfn ${run.gpfn} starts at a page boundary`);
        for (let k = 0; k < run.count; k++) {
          readSync(fd, page, 0, PAGE_SIZE, run.fileOffset + k * PAGE_SIZE);
          const p = run.gpfn + k;
          assert.ok(
            Buffer.from(page).equals(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE)),
            `file bytes of page ${p}`,
          );
          covered.add(p);
        }
      }
    } finally {
      closeSync(fd);
    }
    assert.equal(
      [...covered].sort((a, b) => a - b),
      nonZero,
    );
    assert.ok(map.runs.length < nonZero.length, 'adjacent pages merge into runs');
  } finally {
    cleanup();
  }
});

test('compress mode: smaller for compressible pages, not aligned, round trips', async () => {
  const ram = new Uint8Array(PAGES * PAGE_SIZE);
  for (let p = 0; p < PAGES; p += 2) ram.fill(p & 0xff, p * PAGE_SIZE, p * PAGE_SIZE + 1000); // compressible
  const { ram: rnd } = makeRam(64, 1, 4);
  ram.set(rnd, 0); // and some incompressible pages, stored raw inside compress mode
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  const st = await writeRam(w, ram, { compress: true, batchPages: 64 });
  await w.end();
  assert.ok(st.dataBytes < (st.dataPages * PAGE_SIZE) / 4, `deflated ${st.dataBytes} bytes for ${st.dataPages} pages`);
  const out = new Uint8Array(ram.length);
  for await (const r of await StreamReader.open(Readable.from([sink.bytes()]))) {
    if (r.kind === 'ram') applyRamRecord(out, r);
  }
  // How each batch is stored shows to a reader that skips the data (one that reads it gets pages).
  const encodings = new Set<number>();
  for await (const r of await StreamReader.open(Readable.from([sink.bytes()]), { skipRamData: true })) {
    if (r.kind === 'ram') encodings.add(r.encoding);
  }
  assert.equal([...encodings].sort(), [0, 1], 'incompressible batch stored raw, the rest deflated');
  assert.ok(Buffer.from(out).equals(Buffer.from(ram)));
});

test('bitmap: only marked pages are sent, zero ones listed', async () => {
  const { ram } = makeRam(256, 0.5, 21);
  const bitmap = new Uint8Array(32);
  const marked = [0, 1, 7, 8, 63, 64, 200, 255];
  for (const p of marked) bitmap[p >> 3]! |= 1 << (p & 7);
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER, { alignPages: false });
  const st = await writeRam(w, ram, { bitmap, basePfn: 0x100 });
  await w.end();
  assert.is(st.scanned, marked.length);
  const seen: number[] = [];
  for await (const r of await StreamReader.open(Readable.from([sink.bytes()]))) {
    if (r.kind === 'ram' || r.kind === 'zero') seen.push(...Array.from(r.pfns, (x) => x - 0x100));
  }
  assert.equal(
    seen.sort((a, b) => a - b),
    marked,
  );
});

test('beforeRange: called once per range the scan visits, before any of its pages is read', async () => {
  const pages = 1024;
  const { ram } = makeRam(pages, 1, 5);
  const bitmap = new Uint8Array(pages / 8);
  const marked = [3, 70, 71, 300, 1023];
  for (const p of marked) bitmap[p >> 3]! |= 1 << (p & 7);
  const calls: Array<[number, number]> = [];
  // What the hook writes must be in the copy: a live source re-arms dirty tracking there.
  const stamp = (first: number, count: number): void => {
    calls.push([first, count]);
    for (let p = first; p < first + count && p < pages; p++)
      new DataView(ram.buffer, p * PAGE_SIZE).setUint32(0, 0xc0ffee00 + calls.length, true);
  };
  for (const bm of [bitmap, undefined]) {
    calls.length = 0;
    const sink = memorySink();
    const w = await StreamWriter.start(sink, HEADER, { alignPages: false });
    await writeRam(w, ram, {
      ...(bm ? { bitmap: bm } : {}),
      zeroPages: 'list',
      beforeRange: { rangePages: 256, call: stamp },
    });
    await w.end();
    assert.equal(
      calls,
      bm
        ? [
            [0, 256],
            [256, 256],
            [768, 256],
          ]
        : [
            [0, 256],
            [256, 256],
            [512, 256],
            [768, 256],
          ],
    );
    let checked = 0;
    for await (const r of await StreamReader.open(Readable.from([sink.bytes()]))) {
      if (r.kind !== 'ram') continue;
      r.pfns.forEach((pfn, i) => {
        const range = calls.findIndex(([f, n]) => pfn >= f && pfn < f + n);
        assert.is(
          new DataView(r.data.buffer, r.data.byteOffset + i * PAGE_SIZE).getUint32(0, true),
          0xc0ffee00 + range + 1,
          `page ${pfn}`,
        );
        checked++;
      });
    }
    assert.is(checked, bm ? marked.length : pages);
  }
});

test('applyRamRecord: page numbers outside RAM throw FormatError and write nothing', () => {
  const ram = new Uint8Array(4 * PAGE_SIZE);
  const data = new Uint8Array(2 * PAGE_SIZE).fill(1);
  const rec: RamPagesRecord = {
    kind: 'ram',
    pfns: Float64Array.of(1, 4),
    encoding: 0,
    data,
    dataOffset: 0,
    dataLength: data.length,
  };
  assert.throws(
    () => applyRamRecord(ram, rec),
    (e: Error) => e.name === 'FormatError' && /outside guest RAM/.test(e.message),
  );
  assert.ok(
    ram.every((b) => b === 0),
    'the in-range page was not written either',
  );
  const below: RamPagesRecord = { ...rec, pfns: Float64Array.of(0x0f, 0x10) };
  assert.throws(() => applyRamRecord(ram, below, 0x10), /outside guest RAM/);
  const zero = { kind: 'zero' as const, pfns: Float64Array.of(-1) };
  assert.throws(() => applyRamRecord(ram, zero), /outside guest RAM/);
  const bomb: RamPagesRecord = {
    ...rec,
    pfns: Float64Array.of(0),
    encoding: 1,
    data: new Uint8Array([0xff, 0xff, 0xff]),
  };
  assert.throws(
    () => applyRamRecord(ram, bomb),
    (e: Error) => e.name === 'FormatError',
  );
});

test('zero strategies agree, including a page whose only set bit is a sign bit', () => {
  const { ram } = makeRam(64, 0.5, 2);
  ram.fill(0, 5 * PAGE_SIZE, 6 * PAGE_SIZE);
  ram[5 * PAGE_SIZE + 7] = 0x80; // -0.0 as a double
  ram.fill(0, 6 * PAGE_SIZE, 7 * PAGE_SIZE);
  ram[7 * PAGE_SIZE - 1] = 1; // last byte only
  const expect = Array.from({ length: 64 }, (_, p) =>
    ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE).every((b) => b === 0),
  );
  for (const [name, make] of Object.entries(ZERO_STRATEGIES)) {
    const t = make(ram);
    assert.equal(
      Array.from({ length: 64 }, (_, p) => t(p)),
      expect,
      name,
    );
  }
  assert.is(expect[5], false);
  assert.is(expect[6], false);
});

test('openSnapshot + skipRamData yields page lists without data', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const { ram, nonZero } = makeRam(256, 0.3, 8);
    const path = join(dir, 's');
    await writeSnapshotFile(path, HEADER, (w) => writeRam(w, ram).then(() => undefined));
    const f = await openSnapshot(path, { skipRamData: true });
    let pages = 0;
    for await (const r of f) if (r.kind === 'ram') ((pages += r.pfns.length), assert.is(r.data.length, 0));
    await f.close();
    assert.is(pages, nonZero.length);
  } finally {
    cleanup();
  }
});

test.run();
