// Header, sections and RAM survive a trip through a real file, a unix
// socket and a pipe through `cat`, byte for byte.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import {
  applyRamRecord,
  openSnapshot,
  StreamReader,
  StreamWriter,
  writableSink,
  writeRam,
  writeSnapshotFile,
} from '../../../src/migrate/index.js';
import type { Section, StreamRecord } from '../../../src/migrate/index.js';
import { HEADER, makeRam, SECTIONS, socketPair } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

const PAGES = 1024; // 4 MiB

async function consume(records: AsyncIterable<StreamRecord>, ram: Uint8Array): Promise<Section[]> {
  const sections: Section[] = [];
  for await (const r of records) {
    if (r.kind === 'section') sections.push(r.section);
    else if (r.kind === 'ram' || r.kind === 'zero') applyRamRecord(ram, r);
  }
  return sections;
}

test('file: header, sections and RAM round trip', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const { ram, nonZero } = makeRam(PAGES, 0.25);
    const path = join(dir, 'a.xkvm');
    const res = await writeSnapshotFile(path, HEADER, async (w) => {
      for (const s of SECTIONS) await w.writeSection(s);
      await writeRam(w, ram);
    });
    assert.is(res.counts.sections, 3);
    assert.is(res.counts.dataPages, nonZero.length);
    assert.is(res.counts.zeroPages, 0);
    const f = await openSnapshot(path);
    assert.is(f.header.producer, HEADER.producer);
    assert.equal(f.header.machine, HEADER.machine);
    assert.equal(f.header.schemas, HEADER.schemas);
    assert.is(f.header.formatMajor, 1);
    const out = new Uint8Array(ram.length).fill(0);
    const sections = await consume(f, out);
    await f.close();
    assert.equal(sections, SECTIONS);
    assert.ok(Buffer.from(out).equals(Buffer.from(ram)), 'restored RAM equals the original');
    assert.equal(f.end, res.counts);
  } finally {
    cleanup();
  }
});

test('unix socket: stream with backpressure, dirty-bitmap round', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const { ram } = makeRam(PAGES, 0.5, 11);
    const [a, b] = await socketPair(join(dir, 'sock'));
    // Destination starts with stale data everywhere: zero pages must be sent as RAM_ZERO.
    const dest = new Uint8Array(ram.length).fill(0xee);
    const bitmap = new Uint8Array(PAGES / 8).fill(0xff);
    const sending = (async () => {
      const w = await StreamWriter.start(writableSink(a), HEADER, { alignPages: false });
      await writeRam(w, ram, { bitmap });
      for (const s of SECTIONS) await w.writeSection(s);
      const counts = await w.end();
      a.end();
      return counts;
    })();
    const reader = await StreamReader.open(b);
    const sections = await consume(reader, dest);
    const counts = await sending;
    assert.equal(sections, SECTIONS);
    assert.ok(counts.zeroPages > 0 && counts.dataPages > 0);
    assert.is(counts.zeroPages + counts.dataPages, PAGES);
    assert.ok(Buffer.from(dest).equals(Buffer.from(ram)));
    b.destroy();
  } finally {
    cleanup();
  }
});

test('pipe through cat: compressed stream', async () => {
  const { ram } = makeRam(PAGES, 0.25, 5);
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const sending = (async () => {
    const w = await StreamWriter.start(writableSink(cat.stdin), HEADER);
    for (const s of SECTIONS) await w.writeSection(s);
    const st = await writeRam(w, ram, { compress: true });
    await w.end();
    cat.stdin.end();
    return st;
  })();
  const dest = new Uint8Array(ram.length);
  const sections = await consume(await StreamReader.open(cat.stdout), dest);
  const st = await sending;
  assert.equal(sections, SECTIONS);
  assert.ok(Buffer.from(dest).equals(Buffer.from(ram)));
  assert.ok(st.dataPages > 0);
  await once(cat, 'close');
});

test('reader passes through types it is told about', async () => {
  const { memorySink } = await import('../../helpers/stream.js');
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  await w.writeRecord(0x8000_0042, new Uint8Array([9, 8, 7]));
  await w.end();
  const { Readable } = await import('node:stream');
  const r = await StreamReader.open(Readable.from([sink.bytes()]), { passTypes: [0x8000_0042] });
  const seen: StreamRecord[] = [];
  for await (const rec of r) seen.push(rec);
  assert.is(seen.length, 1);
  const rec = seen[0]!;
  assert.ok(rec.kind === 'other' && rec.type === 0x8000_0042 && Buffer.from(rec.body).equals(Buffer.from([9, 8, 7])));
});

test('peer closing the socket mid-stream gives IoError, not a hang', async () => {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const [a, b] = await socketPair(join(dir, 'sock'));
    b.destroy(); // the destination dies
    const { ram } = makeRam(PAGES, 1, 13);
    const w = await StreamWriter.start(writableSink(a), HEADER, { alignPages: false });
    try {
      for (let i = 0; i < 8; i++) await writeRam(w, ram); // far beyond socket buffers
      await w.end();
      assert.unreachable('writing into a closed socket must fail');
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_IO', String(err));
      assert.match((err as Error).message, /^write failed: /);
    }
    a.destroy();
  } finally {
    cleanup();
  }
});

test.run();
