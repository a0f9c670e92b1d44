// The kernel-fed ring (socket-byte-source.ts) under the record stream: records
// larger than the ring, views that must not be overwritten while held, SYNC
// records for a live destination, and a peer that goes away mid-record.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { applyRamRecord, StreamReader, StreamWriter, writableSink, writeRam } from '../../../src/migrate/index.js';
import { socketSource, type SocketSource } from '../../../src/migrate/stream/socket-byte-source.js';
import { memorySink } from '../../../src/migrate/stream/byte-sink.js';
import { OPTIONAL_BIT, RecordType } from '../../../src/migrate/stream/format.js';
import { HEADER, makeRam, rng, SECTIONS, socketPair } from '../../helpers/stream.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * Runs `body` on a connected pair whose accepting end is taken over by
 * socketSource, as `receive` does; closes it and the directory afterwards.
 */
async function withPair(body: (p: { client: Socket; taken: SocketSource }) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir('migrate');
  try {
    const [client, peer] = await socketPair(join(dir, 's'), { pauseOnConnect: true });
    const taken = socketSource(peer);
    assert.ok(taken, 'the accepted socket exposes its descriptor');
    await body({ client, taken: taken! });
    taken!.socket.destroy();
  } finally {
    cleanup();
  }
}

test('bytes arrive intact across the ring, in reads bigger and smaller than it', () =>
  withPair(async ({ client, taken }) => {
    const total = 48 << 20; // three times the ring
    const data = new Uint8Array(total);
    const rand = rng(7);
    for (let i = 0; i < total; i += 4) new DataView(data.buffer).setUint32(i, rand() >>> 0, true);
    client.end(data);
    const sizes = [24, 5, 20 << 20, 1, 3 << 20, 4096, 13 << 20];
    let at = 0;
    const scratch = new Uint8Array(32 << 20);
    for (let k = 0; at < total; k++) {
      const n = Math.min(sizes[k % sizes.length]!, total - at);
      const withScratch = k % 2 === 0;
      const got = await taken.source.read(n, withScratch ? scratch : undefined);
      assert.is(got.length, n);
      assert.ok(
        Buffer.from(got).equals(Buffer.from(data.subarray(at, at + n))),
        `read ${k} (${n} bytes at ${at}) matches`,
      );
      at += n;
    }
    assert.is((await taken.source.read(10)).length, 0, 'end of stream reads empty');
  }));

test('a copy (no scratch) survives later reads; skip crosses the ring', () =>
  withPair(async ({ client, taken }) => {
    const block = (v: number) => new Uint8Array(1 << 20).fill(v);
    for (let v = 1; v <= 40; v++) client.write(block(v));
    client.end();
    const kept = await taken.source.read(1 << 20);
    assert.is(await taken.source.skip(30 << 20), 30 << 20);
    const after = await taken.source.read(1 << 20);
    assert.ok(
      kept.every((b) => b === 1),
      'the first block is unchanged after the ring wrapped',
    );
    assert.ok(after.every((b) => b === 32));
    assert.is(await taken.source.skip(100 << 20), 8 << 20, 'skip stops at the end');
  }));

test('a migration stream through the ring: RAM, sections, SYNC yielded only on request', () =>
  withPair(async ({ client, taken }) => {
    const PAGES = 8192; // 32 MiB: twice the ring
    const { ram } = makeRam(PAGES, 0.6, 3);
    const sending = (async () => {
      const w = await StreamWriter.start(writableSink(client), HEADER, { alignPages: false });
      await writeRam(w, ram, { zeroPages: 'omit' });
      await w.sync(1);
      for (const s of SECTIONS) await w.writeSection(s);
      await w.sync(2);
      const counts = await w.end();
      client.end();
      return counts;
    })();
    const dest = new Uint8Array(ram.length);
    const reader = await StreamReader.open(taken.source, { reuseRamBuffer: true, syncRecords: true });
    const syncs: number[] = [];
    let sections = 0;
    for await (const r of reader) {
      if (r.kind === 'ram' || r.kind === 'zero') applyRamRecord(dest, r);
      else if (r.kind === 'sync') syncs.push(r.seq);
      else if (r.kind === 'section') sections++;
    }
    const counts = await sending;
    assert.equal(syncs, [1, 2]);
    assert.is(sections, SECTIONS.length);
    assert.is(counts.records, reader.end!.records, 'END counts the SYNC records');
    assert.ok(Buffer.from(dest).equals(Buffer.from(ram)), 'RAM equal after the ring wrapped');
  }));

test('a reader that is not a live destination skips SYNC silently', async () => {
  const sink = memorySink();
  const w = await StreamWriter.start(sink, HEADER);
  await w.sync(1);
  await w.writeSection(SECTIONS[0]!);
  await w.end();
  const { Readable } = await import('node:stream');
  const warnings: string[] = [];
  const r = await StreamReader.open(Readable.from([sink.bytes()]), { onWarning: (x) => warnings.push(x.message) });
  const kinds: string[] = [];
  for await (const rec of r) kinds.push(rec.kind);
  assert.equal(kinds, ['section']);
  assert.equal(warnings, []);
  assert.ok((RecordType.SYNC & OPTIONAL_BIT) !== 0, 'SYNC is an optional type');
});

test('the peer going away inside a record is a truncation error, not a hang', () =>
  withPair(async ({ client, taken }) => {
    const sink = memorySink();
    const w = await StreamWriter.start(sink, HEADER, { alignPages: false });
    await writeRam(w, makeRam(2048, 1, 9).ram);
    await w.end();
    const bytes = sink.bytes();
    client.end(bytes.subarray(0, bytes.length - 100_000));
    const reader = await StreamReader.open(taken.source, { reuseRamBuffer: true });
    try {
      for await (const _ of reader) void _;
      assert.unreachable('a truncated stream must fail');
    } catch (err) {
      assert.is((err as { code?: string }).code, 'E_FORMAT', String(err));
      assert.match(String(err), /truncated/);
    }
  }));

test.run();
