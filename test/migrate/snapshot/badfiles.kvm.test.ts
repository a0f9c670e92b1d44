// Bad snapshot files never start a guest: each gets one line naming the
// problem and exit status 2.  An unknown optional record is skipped with a
// warning and the guest runs.  Variants are made from the golden snapshot.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, OPTIONAL_BIT, PAGE_SIZE } from '../../../src/migrate/stream/format.js';
import { applyRamRecord, openSnapshot, writeRam, writeSnapshotFile, type Section } from '../../../src/migrate/index.js';
import { xenkvmSync } from '../../helpers/cli.js';
import { goldenFiles, goldenRunnableHere } from '../../helpers/golden.js';
import { kvmSkipReason } from '../../helpers/kvm.js';
import { tempDir } from '../../helpers/tmp.js';

const { dir, cleanup } = tempDir('bad');
// Variants that must get as far as running need a golden file this host's CPU can run (golden.ts).
const kvmSkip = kvmSkipReason();
const split = kvmSkip ? null : await goldenRunnableHere();
const skip =
  kvmSkip ??
  (split!.runnable.length === 0 ? `no golden snapshot runs on this host's CPU (${split!.refused[0]?.why})` : null);
if (skip) console.log(`  skip snapshot-badfiles (the restore part): ${skip}`);
const GOLDEN = split?.runnable[0] ?? goldenFiles()[0]!;

const restore = (file: string) => xenkvmSync(['restore', file]);

function variant(name: string, edit: (b: Buffer) => Buffer): string {
  const file = join(dir, name);
  writeFileSync(file, edit(Buffer.from(readFileSync(GOLDEN))));
  return file;
}

/** Re-writes the golden file's content, with `extra` records and sections added after its sections. */
async function rewrite(
  name: string,
  extra: { sections?: Section[]; records?: Array<[number, Uint8Array]> },
): Promise<string> {
  const src = await openSnapshot(GOLDEN);
  const sections: Section[] = [];
  const mem = new Uint8Array((src.header.machine as { memBytes: number }).memBytes);
  for await (const r of src) {
    if (r.kind === 'section') sections.push(r.section);
    else if (r.kind === 'ram' || r.kind === 'zero') applyRamRecord(mem, r);
  }
  await src.close();
  const file = join(dir, name);
  await writeSnapshotFile(
    file,
    src.header,
    async (w) => {
      for (const s of [...sections, ...(extra.sections ?? [])]) await w.writeSection(s);
      for (const [type, body] of extra.records ?? []) await w.writeRecord(type, body);
      await writeRam(w, mem);
    },
    { alignPages: true },
  );
  return file;
}

function expectRefused(file: string, pattern: RegExp): void {
  const r = restore(file);
  assert.is(r.status, 2, `${file}: exit ${r.status}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.is(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.is(r.stdout, '', 'no guest output: nothing was started');
}

test('truncated files (in the header, a section, guest memory, before END)', () => {
  const size = readFileSync(GOLDEN).length;
  for (const cut of [10, 100, 5000, Math.floor(size / 2), size - 10]) {
    expectRefused(
      variant(`trunc-${cut}.xks`, (b) => b.subarray(0, cut)),
      /truncated|ends/,
    );
  }
});

test('a flipped bit anywhere is caught by a checksum', () => {
  const size = readFileSync(GOLDEN).length;
  for (const at of [12, 40, 3000, Math.floor(size * 0.7)]) {
    expectRefused(
      variant(`flip-${at}.xks`, (b) => {
        b[at]! ^= 0x10;
        return b;
      }),
      /checksum|CRC|corrupt/i,
    );
  }
});

test('wrong magic', () => {
  expectRefused(
    variant('magic.xks', (b) => {
      b.write('NOTXENKV', 0, 'latin1');
      return b;
    }),
    /not a xenkvm stream/,
  );
});

test('a newer major format version is refused by name', () => {
  expectRefused(
    variant('major.xks', (b) => {
      b.writeUInt16LE(2, 8);
      b.writeUInt32LE(crc32(b.subarray(0, 12)), 12);
      return b;
    }),
    /2\.\d+ is newer/,
  );
});

(skip ? test.skip : test)(
  'a flipped bit in uncompressed page data (loaded straight into guest memory) is caught by the record checksum',
  async () => {
    const raw = await rewrite('raw.xks', {});
    const size = readFileSync(raw).length;
    const flipped = join(dir, 'raw-flip.xks');
    const b = Buffer.from(readFileSync(raw));
    b[Math.floor(size * 0.6)]! ^= 0x01;
    writeFileSync(flipped, b);
    expectRefused(flipped, /checksum mismatch/);
    const ok = restore(raw);
    assert.is(ok.status, 0, `the unflipped rewrite restores: ${ok.stderr}`);
  },
);

(skip ? test.skip : test)('an unknown mandatory section is refused, naming it', async () => {
  const file = await rewrite('unknown-mandatory.xks', {
    sections: [{ name: 'frobnicator', instance: 0, version: 3, payload: { v: 3, f: [] } }],
  });
  expectRefused(file, /unknown mandatory section 'frobnicator' \(version 3\)/);
});

(skip ? test.skip : test)('an unknown optional record is skipped with a warning and the guest runs', async () => {
  const file = await rewrite('unknown-optional.xks', {
    records: [[OPTIONAL_BIT | 0x4242, new Uint8Array(PAGE_SIZE / 4)]],
  });
  const r = restore(file);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /optional/i);
  assert.match(r.stdout, /RESULT: PASS/);
});

test.after(cleanup);
test.run();
