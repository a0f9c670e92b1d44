// Seeded, bounded fuzzing of the reader and the RAM loader: mutated streams,
// half of them with checksums recomputed so the mutation reaches the
// decoders behind them.  Only FormatError may escape.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Readable } from 'node:stream';
import { FormatError } from '../../../src/errors.js';
import {
  applyRamRecord,
  PAGE_SIZE,
  RecordType,
  StreamReader,
  StreamWriter,
  writeRam,
} from '../../../src/migrate/index.js';
import { crc32, FRAME_BYTES, PREAMBLE_BYTES, readU64, writeU64 } from '../../../src/migrate/stream/format.js';
import { HEADER, makeRam, memorySink, rng, SECTIONS } from '../../helpers/stream.js';

const RAM_PAGES = 32;
// FUZZ_N and FUZZ_SEED widen a run by hand (15000 x 3 seeds passed when this was written).
const ITERATIONS = Number(process.env.FUZZ_N ?? 1500); // ~0.6 s here

async function sample(): Promise<Uint8Array> {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  for (const s of SECTIONS) await w.writeSection(s);
  const { ram } = makeRam(RAM_PAGES, 0.4, 99);
  ram.fill(3, 0, 8 * PAGE_SIZE); // compressible pages for the deflate path
  const bitmap = new Uint8Array(RAM_PAGES / 8).fill(0xff);
  await writeRam(w, ram, { batchPages: 4, bitmap });
  await writeRam(w, ram, { batchPages: 8, compress: true, bitmap });
  await w.writeRecord(0x8000_0005, new Uint8Array(7));
  await w.end();
  return sink.bytes();
}

/** Recomputes the preamble, frame and body checksums of every complete record. */
function refix(b: Uint8Array): void {
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  if (b.length >= PREAMBLE_BYTES) v.setUint32(12, crc32(b.subarray(0, 12)), true);
  for (let at = PREAMBLE_BYTES; at + FRAME_BYTES <= b.length;) {
    const len = readU64(v, at + 8);
    if (!(at + FRAME_BYTES + len <= b.length)) break;
    v.setUint32(at + 16, crc32(b.subarray(at + FRAME_BYTES, at + FRAME_BYTES + len)), true);
    v.setUint32(at + 20, crc32(b.subarray(at, at + 20)), true);
    at += FRAME_BYTES + len;
  }
}

function mutate(src: Uint8Array, r: () => number): Uint8Array {
  let b = Uint8Array.from(src);
  const pick = (n: number): number => r() % n;
  switch (pick(6)) {
    case 0: // bit flips, anywhere
      for (let k = 1 + pick(8); k > 0; k--) b[pick(b.length)]! ^= 1 << pick(8);
      break;
    case 1: // random bytes over a span
      for (let at = pick(b.length), k = pick(64); k > 0 && at < b.length; k--, at++) b[at] = r() & 0xff;
      break;
    case 2: // truncation
      b = b.subarray(0, pick(b.length));
      break;
    case 3: {
      // interesting integers at an aligned spot (lengths, counts, offsets)
      const at = pick(b.length - 8) & ~3;
      const values = [0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 4096, 2 ** 32 + 1, 2 ** 53, 2 ** 60];
      writeU64(new DataView(b.buffer, b.byteOffset), at, Math.min(values[pick(values.length)]!, 2 ** 53 - 1));
      break;
    }
    case 4: {
      // a span duplicated or removed (records repeated, lost)
      const at = pick(b.length);
      const len = pick(Math.min(4096, b.length - at) + 1);
      b = pick(2)
        ? Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)])
        : Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
      break;
    }
    default: {
      // retype a record
      const v = new DataView(b.buffer, b.byteOffset);
      const types = [
        RecordType.HEADER,
        RecordType.SECTION,
        RecordType.RAM_PAGES,
        RecordType.RAM_ZERO,
        RecordType.END,
        0x77,
        0x8000_0077,
      ];
      for (let at = PREAMBLE_BYTES, i = pick(12); at + FRAME_BYTES <= b.length; i--) {
        if (i === 0) {
          v.setUint32(at, types[pick(types.length)]!, true);
          break;
        }
        at += FRAME_BYTES + readU64(v, at + 8);
      }
    }
  }
  if (pick(2)) refix(b);
  return b;
}

test('only FormatError escapes the reader and the RAM loader', async () => {
  const good = await sample();
  const r = rng(Number(process.env.FUZZ_SEED ?? 0x5eed));
  const ram = new Uint8Array(RAM_PAGES * PAGE_SIZE);
  const outcomes = { ok: 0, format: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const bytes = mutate(good, r);
    const skip = (i & 3) === 0;
    try {
      const reader = await StreamReader.open(Readable.from([Buffer.from(bytes)]), {
        onWarning: () => undefined,
        skipRamData: skip,
        maxBatchPages: 64,
      });
      for await (const rec of reader) {
        if ((rec.kind === 'ram' && !skip) || rec.kind === 'zero') applyRamRecord(ram, rec);
      }
      outcomes.ok++;
    } catch (err) {
      if (!(err instanceof FormatError)) {
        assert.unreachable(
          `iteration ${i}: ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err)}`,
        );
      }
      outcomes.format++;
    }
  }
  if (process.env.FUZZ_N) console.log(outcomes);
  assert.ok(outcomes.format > ITERATIONS / 2, `most mutations are caught (${JSON.stringify(outcomes)})`);
});

test.run();
