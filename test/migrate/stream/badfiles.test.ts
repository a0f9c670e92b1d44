// Every kind of bad input ends in a FormatError whose message names the
// problem: truncation, bit flips, wrong magic, newer major, unknown records.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.js';
import { openSnapshot, StreamReader, StreamWriter, writeRam } from '../../../src/migrate/index.js';
import type { ReaderOptions, StreamWarning } from '../../../src/migrate/index.js';
import { FRAME_BYTES, PREAMBLE_BYTES, readU64 } from '../../../src/migrate/stream/format.js';
import { encodePreamble } from '../../../src/migrate/stream/writer.js';
import { HEADER, makeRam, memorySink, SECTIONS } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

async function build(extra?: (w: StreamWriter) => Promise<void>): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  await w.writeSection(SECTIONS[0]!);
  if (extra) await extra(w);
  await writeRam(w, makeRam(16, 0.5, 1).ram);
  await w.writeSection(SECTIONS[2]!);
  await w.end();
  return sink.bytes();
}

/** Offsets of each record frame, in order. */
function frames(bytes: Uint8Array): { at: number; type: number; end: number }[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out = [];
  for (let at = PREAMBLE_BYTES; at < bytes.length;) {
    const end = at + FRAME_BYTES + readU64(v, at + 8);
    out.push({ at, type: v.getUint32(at, true), end });
    at = end;
  }
  return out;
}

async function readAll(bytes: Uint8Array, options: ReaderOptions = {}): Promise<number> {
  let n = 0;
  for await (const _ of await StreamReader.open(Readable.from([Buffer.from(bytes)]), options)) n++;
  return n;
}

async function rejects(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  try {
    await readAll(bytes);
  } catch (err) {
    assert.instance(err, FormatError);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected FormatError matching ${pattern}`);
}

const good = await build();
const recs = frames(good);

test('the unmodified stream reads', async () => {
  assert.is(await readAll(good), recs.length - 2); // HEADER and END are not yielded
});

test('truncated at several points', async () => {
  await rejects(good.subarray(0, 0), /empty input/);
  await rejects(good.subarray(0, 12), /ends inside its 16-byte preamble/);
  await rejects(good.subarray(0, PREAMBLE_BYTES), /ends before its HEADER/);
  await rejects(good.subarray(0, PREAMBLE_BYTES + 10), /ends inside a record frame at offset 16/);
  await rejects(good.subarray(0, PREAMBLE_BYTES + FRAME_BYTES + 5), /ends inside the body of the HEADER record/);
  const ram = recs.find((r) => r.type === 3)!;
  await rejects(good.subarray(0, ram.at + FRAME_BYTES + 5000), /ends inside the body of the RAM_PAGES record/);
  await rejects(good.subarray(0, recs[recs.length - 1]!.at), /without an END record/);
  await rejects(good.subarray(0, good.length - 1), /ends inside the body of the END record/);
});

function flip(offset: number, bit = 0): Uint8Array {
  const b = Uint8Array.from(good);
  b[offset]! ^= 1 << bit;
  return b;
}

test('bit flips in preamble, frame, header, section and RAM data', async () => {
  await rejects(flip(9), /preamble is corrupt \(checksum mismatch\)/);
  await rejects(flip(PREAMBLE_BYTES + 9), /record frame at offset 16 is corrupt/);
  await rejects(flip(PREAMBLE_BYTES + FRAME_BYTES + 3), /HEADER record at offset 16: body checksum mismatch/);
  const section = recs.find((r) => r.type === 2)!;
  await rejects(flip(section.at + FRAME_BYTES + 2, 5), /SECTION record at offset \d+: body checksum mismatch/);
  const ram = recs.find((r) => r.type === 3)!;
  await rejects(flip(ram.end - 100, 7), /RAM_PAGES record at offset \d+: body checksum mismatch/);
  await rejects(flip(good.length - 3), /END record at offset \d+: body checksum mismatch/);
});

test('wrong magic', async () => {
  await rejects(flip(0), /not a xenkvm stream \(wrong magic\)/);
  await rejects(new TextEncoder().encode('#!/bin/sh\necho hello\n'), /wrong magic/);
});

test('newer major and older major', async () => {
  const b = Uint8Array.from(good);
  b.set(encodePreamble(2, 0), 0);
  await rejects(b, /^file format 2\.0 is newer than this xenkvm reads \(1\.x\)$/);
  b.set(encodePreamble(0, 9), 0);
  await rejects(b, /file format 0\.9 is not supported/);
});

test('newer minor with matching header reads', async () => {
  // A preamble saying 1.7 must agree with the HEADER, so forge neither: check the mismatch is caught.
  const b = Uint8Array.from(good);
  b.set(encodePreamble(1, 7), 0);
  await rejects(b, /format version does not match the preamble's 1\.7/);
});

test('unknown mandatory record type is named', async () => {
  const bytes = await build((w) => w.writeRecord(0x0000_0077, new Uint8Array(10)));
  await rejects(bytes, /unknown mandatory record type 0x00000077 at offset \d+/);
});

test('unknown optional record is skipped with a warning', async () => {
  const bytes = await build((w) => w.writeRecord(0x8000_0123, new Uint8Array(1000)));
  const warnings: StreamWarning[] = [];
  const n = await readAll(bytes, { onWarning: (w) => warnings.push(w) });
  assert.is(n, recs.length - 2);
  assert.is(warnings.length, 1);
  assert.is(warnings[0]!.type, 0x8000_0123);
  assert.match(warnings[0]!.message, /skipped unknown optional record type 0x80000123/);
});

test('a record removed whole is caught by the END counts', async () => {
  const section = recs.find((r) => r.type === 2)!;
  const cut = Buffer.concat([good.subarray(0, section.at), good.subarray(section.end)]);
  await rejects(cut, /END record says 2 sections but the stream holds 1/);
});

test('limits: oversized record and too many sections', async () => {
  try {
    await readAll(good, { maxRecordBytes: 1000 });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, FormatError);
    assert.match((err as Error).message, /above the limit maxRecordBytes=1000/);
  }
  try {
    await readAll(good, { maxSections: 1 });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /more than maxSections=1/);
  }
});

test('snapshot file: errors name the file; bytes after END are rejected', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const path = join(dir, 'bad.xkvm');
    writeFileSync(path, flip(0));
    try {
      await openSnapshot(path);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, FormatError);
      assert.is((err as Error).message, `${path}: not a xenkvm stream (wrong magic)`);
    }
    writeFileSync(path, Buffer.concat([good, Buffer.from('junk')]));
    const f = await openSnapshot(path);
    try {
      for await (const _ of f);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, FormatError);
      assert.match((err as Error).message, /4 unexpected bytes after the END record/);
    }
    await f.close();
    try {
      await openSnapshot(join(dir, 'missing'));
      assert.unreachable();
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_IO');
      assert.match((err as Error).message, /no such file or directory \(ENOENT\)$/);
    }
  } finally {
    cleanup();
  }
});

test.run();
