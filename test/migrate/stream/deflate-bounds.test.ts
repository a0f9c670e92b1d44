// A deflated batch must inflate to exactly count x 4096 bytes (FORMAT.md
// "RAM_PAGES"; issue 14, defect 4).  One that inflates to more is refused as
// soon as it passes that size, so a 1 MB record that would inflate to 1 GiB
// costs what a good one does; too little, or no DEFLATE at all, is refused
// too.  The reader (a migration destination's) and restore's RAM loader both.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, openSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.js';
import {
  openSnapshot,
  PAGE_SIZE,
  RecordType,
  StreamReader,
  StreamWriter,
  writeSnapshotFile,
} from '../../../src/migrate/index.js';
import { RamLoader } from '../../../src/migrate/ram/load-eager.js';
import type { RamPagesRecord, RamZeroRecord } from '../../../src/migrate/stream/records.js';
import { deflatedZeros, ramPagesBody } from '../../helpers/batches.js';
import { HEADER, memorySink } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

const PAGES = 4;
const WANT = PAGES * PAGE_SIZE;
const PFNS = [0, 1, 2, 3];
const GIB = 1 << 30;

async function streamWith(data: Uint8Array): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  await w.writeRecord(RecordType.RAM_PAGES, ramPagesBody(data, PFNS, 1));
  await w.end();
  return sink.bytes();
}

async function readPages(bytes: Uint8Array): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const r of await StreamReader.open(Readable.from([Buffer.from(bytes)]))) {
    if (r.kind === 'ram') {
      assert.is(r.encoding, 0, 'handed over inflated');
      out.push(r.data);
    }
  }
  return out;
}

async function refuses(bytes: Uint8Array, pattern: RegExp): Promise<number> {
  const t0 = performance.now();
  try {
    await readPages(bytes);
  } catch (e) {
    assert.instance(e, FormatError);
    assert.match((e as Error).message, pattern);
    return performance.now() - t0;
  }
  assert.unreachable(`accepted; expected ${pattern}`);
  return 0;
}

test('a batch that inflates to exactly count x 4096 bytes is read as its pages', async () => {
  const pages = await readPages(await streamWith(deflatedZeros(WANT)));
  assert.is(pages.length, 1);
  assert.is(pages[0]!.length, WANT);
  assert.ok(pages[0]!.every((b) => b === 0));
});

test('one byte too many, or 1 GiB too many, is refused without inflating the rest', async () => {
  await refuses(await streamWith(deflatedZeros(WANT + 1)), /inflates to more than 16384 bytes \(4 pages\)/);
  const big = await streamWith(deflatedZeros(GIB));
  assert.ok(big.length < 2 << 20, `a ${big.length}-byte stream`);
  const ms = await refuses(big, /RAM_PAGES record at offset \d+: deflated data inflates to more than 16384 bytes/);
  // Inflating all of it takes seconds here; stopping at the limit, milliseconds.
  assert.ok(ms < 1500, `refused after ${ms.toFixed(0)} ms`);
});

test('too few bytes, or data that is not DEFLATE, is refused', async () => {
  await refuses(await streamWith(deflatedZeros(WANT - 1)), /inflates to 16383 bytes, expected 16384 \(4 pages\)/);
  await refuses(await streamWith(new Uint8Array([0xff, 0xff, 0xff, 0xff])), /deflated data does not inflate/);
});

test("restore's RAM loader refuses an over-long batch in a compressed snapshot file", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'bad.xks');
    await writeSnapshotFile(
      path,
      HEADER,
      (w) => w.writeRecord(RecordType.RAM_PAGES, ramPagesBody(deflatedZeros(GIB), PFNS, 1)),
      {
        alignPages: false,
      },
    );
    const f = await openSnapshot(path, { skipRamData: true });
    const records: Array<(RamPagesRecord | RamZeroRecord) & { offset: number }> = [];
    for await (const r of f) if (r.kind === 'ram' || r.kind === 'zero') records.push(r);
    await f.close();
    const fd = openSync(path, 'r');
    const loader = new RamLoader(fd, { chunks: [new Uint8Array(16 * PAGE_SIZE)] }, path);
    const t0 = performance.now();
    try {
      for (const r of records) await loader.apply(r);
      await loader.drain();
      assert.unreachable('accepted');
    } catch (e) {
      assert.instance(e, FormatError);
      assert.match((e as Error).message, /deflated data inflates to more than 16384 bytes/);
    } finally {
      await loader.settle();
      closeSync(fd);
    }
    const ms = performance.now() - t0;
    assert.ok(ms < 1500, `refused after ${ms.toFixed(0)} ms`);
  } finally {
    cleanup();
  }
});

test.run();
