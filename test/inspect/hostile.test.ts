// inspect, diff and schema check on files made to hurt them (issue 14,
// defect 8): each answers with one line and exit 2 naming the problem (or
// its normal answer), never "internal error".  Real files, written by the
// real writer and then edited record by record.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode, Encoder } from '@msgpack/msgpack';
import { diffCommand } from '../../src/cli/diff.js';
import { inspectCommand } from '../../src/cli/inspect.js';
import { schemaCheckCommand } from '../../src/cli/schema.js';
import { FRAME_BYTES, PREAMBLE_BYTES, readU64, RecordType } from '../../src/migrate/stream/format.js';
import { encodeFrame } from '../../src/migrate/stream/writer.js';
import { writeFixture } from '../helpers/inspect.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir();
const p = (n: string): string => join(dir, n);

type Io = { status: number; out: string; err: string };
async function io(f: (o: { out: (t: string) => void; err: (t: string) => void; color: false }) => Promise<number>) {
  let out = '';
  let err = '';
  const status = await f({ out: (t) => void (out += t), err: (t) => void (err += t), color: false });
  return { status, out, err } as Io;
}

function assertOneLine(r: Io, pattern: RegExp, what: string): void {
  assert.is(r.status, 2, `${what}: ${r.err}`);
  const lines = r.err.trim().split('\n');
  assert.is(lines.length, 1, `${what}: one line, got ${r.err}`);
  assert.not.match(r.err, /internal error/, what);
  assert.match(r.err, pattern, what);
}

/** Rewrites the records of `from` into `to`; `edit` returns a record's new body (or the same). */
function rewrite(from: string, to: string, edit: (type: number, body: Uint8Array) => Uint8Array): void {
  const b = readFileSync(from);
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const parts: Uint8Array[] = [b.subarray(0, PREAMBLE_BYTES)];
  for (let at = PREAMBLE_BYTES; at < b.length;) {
    const type = v.getUint32(at, true);
    const end = at + FRAME_BYTES + readU64(v, at + 8);
    const body = edit(type, b.subarray(at + FRAME_BYTES, end));
    parts.push(encodeFrame(type, body), body);
    at = end;
  }
  writeFileSync(to, Buffer.concat(parts));
}

const deepEncoder = new Encoder({ useBigInt64: true, maxDepth: 10_000 });

function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** The fixture with the xen_overlay section's payload replaced by `payload`. */
function withOverlayPayload(to: string, payload: unknown): void {
  rewrite(p('good.xks'), to, (type, body) => {
    if (type !== RecordType.SECTION) return body;
    const s = decode(body, { useBigInt64: true }) as Record<string, unknown>;
    return s['name'] === 'xen_overlay' ? deepEncoder.encode({ ...s, payload }) : body;
  });
}

test.before(async () => {
  await writeFixture(p('good.xks'));
  // The section record is depth 1: a payload of 99 nested arrays holds its innermost value at depth 101.
  withOverlayPayload(p('deep.xks'), nested(99));
  withOverlayPayload(p('deepest-readable.xks'), nested(98));
  withOverlayPayload(p('very-deep.xks'), nested(1000));
});
test.after(cleanup);

test('msgpack nested past 100 levels: inspect and diff say so in one line, exit 2', async () => {
  for (const f of ['deep.xks', 'very-deep.xks']) {
    const why = /SECTION record at offset \d+: msgpack values nested more than 100 levels deep/;
    assertOneLine(await io((o) => inspectCommand({ file: p(f), ...o })), why, `inspect ${f}`);
    assertOneLine(
      await io((o) => inspectCommand({ file: p(f), section: 'xen_overlay', ...o })),
      why,
      `inspect -s ${f}`,
    );
    assertOneLine(await io((o) => diffCommand({ a: p('good.xks'), b: p(f), ...o })), why, `diff ${f}`);
    assertOneLine(await io((o) => diffCommand({ a: p(f), b: p('good.xks'), json: true, ...o })), why, `diff ${f}`);
  }
});

test('msgpack nested as deep as a writer can write is read: the section just does not decode', async () => {
  const r = await io((o) => inspectCommand({ file: p('deepest-readable.xks'), ...o }));
  assert.is(r.status, 0, r.err);
  assert.match(r.out, /xen_overlay .*cannot decode/);
  const d = await io((o) => diffCommand({ a: p('good.xks'), b: p('deepest-readable.xks'), ...o }));
  assert.is(d.status, 1, d.err);
});

test('schema check of a schema without its subsections list: an answer, not "internal error"', async () => {
  rewrite(p('good.xks'), p('no-subsections.xks'), (type, body) => {
    if (type !== RecordType.HEADER) return body;
    const h = decode(body, { useBigInt64: true }) as { schemas: Record<string, Record<string, unknown>> };
    delete h.schemas['cpu']!['subsections'];
    return deepEncoder.encode(h);
  });
  const r = await io((o) => schemaCheckCommand({ old: p('no-subsections.xks'), ...o }));
  assert.is(r.err, '');
  // This build's cpu has a mandatory cpu/xen_vcpu subsection that such files lack.
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /cpu\/xen_vcpu/);
});

test('schema check of a truncated snapshot: one line naming it, exit 2 (not "compatible")', async () => {
  const whole = readFileSync(p('good.xks'));
  const v = new DataView(whole.buffer, whole.byteOffset, whole.length);
  const afterHeader = PREAMBLE_BYTES + FRAME_BYTES + readU64(v, PREAMBLE_BYTES + 8);
  for (const cut of [afterHeader, afterHeader + 30, whole.length - 1]) {
    writeFileSync(p('cut.xks'), whole.subarray(0, cut));
    for (const args of [{ old: p('cut.xks') }, { old: p('good.xks'), new: p('cut.xks') }]) {
      const r = await io((o) => schemaCheckCommand({ ...args, ...o }));
      assertOneLine(r, /cut\.xks: truncated/, `schema check cut at ${cut}`);
    }
  }
  // The whole file is still fine.
  assert.is((await io((o) => schemaCheckCommand({ old: p('good.xks'), ...o }))).status, 0);
});

test.run();
