// The fuzzer's verdicts rest on each mutation saying truly whether it breaks
// a rule: a stream labelled 'stream'-invalid that reads cleanly shows up as an
// accepted-invalid finding against a command that did nothing wrong.  These
// hold the labels to what a full read of the mutated stream says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Readable } from 'node:stream';
import { FormatError } from '../../../src/errors.js';
import { StreamReader } from '../../../src/migrate/index.js';
import { RecordType } from '../../../src/migrate/stream/format.js';
import { loadSeed } from '../../../tools/fuzz/cases.js';
import {
  headFieldValues,
  type Mutation,
  mutateRam,
  mutateStream,
  regroupSections,
  settleEnd,
  type Work,
} from '../../../tools/fuzz/mutate.js';
import { Rng } from '../../../tools/fuzz/rng.js';
import { buildStream, decodeMsgpack, type RawRecord } from '../../../tools/fuzz/stream.js';
import { goldenFiles } from '../../helpers/golden.js';

const seed = loadSeed(goldenFiles()[0]!);

/** The error a full read ends with, or null if the stream reads to its END; page data inflated with `pages`. */
async function readError(bytes: Uint8Array, pages = false): Promise<string | null> {
  try {
    const reader = await StreamReader.open(Readable.from([Buffer.from(bytes)]), {
      onWarning: () => undefined,
      skipRamData: !pages,
    });
    for await (const _ of reader);
    return null;
  } catch (e) {
    if (e instanceof FormatError) return e.message;
    throw e;
  }
}

function work(records: RawRecord[]): Work {
  return {
    records,
    header: decodeMsgpack(records[0]!.body) as Record<string, unknown>,
    headerDirty: false,
    touched: new Set(),
    headerTouched: false,
  };
}

const types = (records: readonly RawRecord[]): number[] => records.map((x) => x.type);

test('moving the sections keeps a second HEADER and a record after END where they were', () => {
  const recs = seed.parsed.records.map((x) => ({ ...x }));
  const endAt = recs.findIndex((x) => x.type === RecordType.END);
  const extraHeader: RawRecord = { type: RecordType.HEADER, flags: 0, body: new Uint8Array(3) };
  const afterEnd: RawRecord = { type: RecordType.SECTION, flags: 0, body: new Uint8Array(1) };
  const input = [...recs.slice(0, 2), extraHeader, ...recs.slice(2, endAt + 1), afterEnd];
  for (const sectionsFirst of [true, false]) {
    const out = regroupSections(input, sectionsFirst);
    assert.is(out.length, input.length);
    assert.ok(out.includes(extraHeader), 'the inserted HEADER is still there');
    assert.is(out[0], input[0]);
    assert.is(out[out.length - 1], afterEnd, 'the record after END stays after END');
    assert.is(out[out.length - 2]!.type, RecordType.END);
    const middle = types(out.slice(1, -2));
    const firstOther = middle.findIndex((t) => t !== RecordType.SECTION);
    const lastSection = middle.lastIndexOf(RecordType.SECTION);
    if (sectionsFirst) assert.ok(lastSection < firstOther, 'sections before the rest');
    else assert.ok(middle.indexOf(RecordType.SECTION) > middle.lastIndexOf(RecordType.RAM_PAGES));
  }
});

test("a removed record with END kept is no rule break once another mutation's record makes the totals good", async () => {
  const recs = seed.parsed.records.map((x) => ({ ...x }));
  const sections = recs.flatMap((x, k) => (x.type === RecordType.SECTION ? [k] : []));
  // One section repeated, another removed: END's kept totals are right again.
  const w = work(recs);
  w.keepEnd = true;
  w.records.splice(sections[0]! + 1, 0, { ...w.records[sections[0]!]! });
  w.records.splice(sections[2]! + 1, 1);
  const mutations: Mutation[] = [
    { label: 'cpu[0] repeated', invalid: 'state' },
    { label: 'a record removed, END left as it was', invalid: 'stream', ifEndMatches: 'state' },
  ];
  settleEnd(w, mutations);
  assert.is(mutations[1]!.invalid, 'state');
  assert.match(mutations[1]!.label, /totals still match/);
  assert.is(await readError(buildStream({ preamble: new Uint8Array(0), records: w.records }, { keepEnd: true })), null);

  // Without the repeat the totals disagree: the label stands and a read refuses the stream.
  const w2 = work(seed.parsed.records.map((x) => ({ ...x })));
  w2.keepEnd = true;
  w2.records.splice(sections[2]!, 1);
  const alone: Mutation[] = [
    { label: 'a record removed, END left as it was', invalid: 'stream', ifEndMatches: 'state' },
  ];
  settleEnd(w2, alone);
  assert.is(alone[0]!.invalid, 'stream');
  assert.match(
    (await readError(buildStream({ preamble: new Uint8Array(0), records: w2.records }, { keepEnd: true }))) ?? '',
    /END record says/,
  );
});

test('a RAM head field is always changed: the encoding byte by its low byte', () => {
  for (const was of [0, 1]) {
    const vals = headFieldValues(4, was, 376);
    assert.ok(!vals.includes(was), `encoding ${was} is not "changed" to itself: ${vals.join(',')}`);
    assert.ok(vals.every((x) => x >= 0 && x <= 0xff));
  }
  for (const field of [0, 8, 12, 16]) {
    const vals = headFieldValues(field, 16385, 376);
    assert.ok(!vals.includes(16385));
    assert.ok(vals.includes(0xffffffff) && vals.every((x) => x >= 0 && x <= 0xffffffff));
  }
});

/** Draws the given u32 values first, then zeros: steers a mutator down one branch. */
class ScriptedRng extends Rng {
  constructor(private readonly script: number[]) {
    super(0);
  }
  override u32(): number {
    return this.script.shift() ?? 0;
  }
}

test('a repeated RAM batch: both copies are left alone by later mutations', () => {
  const w = work(seed.parsed.records.map((x) => ({ ...x })));
  const batches = w.records.filter((x) => x.type === RecordType.RAM_PAGES);
  const m = mutateRam(w, seed.info, new ScriptedRng([8])); // choice 8, the first batch
  assert.match(m?.label ?? '', /repeated/);
  assert.ok(w.touched.has(batches[0]!), 'the earlier copy, whose data a diff never reads, is claimed');
  assert.is(w.touched.size, 2);
});

test("every case labelled 'stream'- or 'pages'-invalid is refused by a full read", async () => {
  // FUZZ_N widens a run by hand (20000 passed when this was written).
  const n = Number(process.env.FUZZ_N ?? 400);
  const wrong: string[] = [];
  for (let no = 0; no < n; no++) {
    const m = mutateStream(seed.parsed, seed.info, new Rng(0x14, no));
    const stream = m.mutations.some((x) => x.invalid === 'stream');
    const pages = m.mutations.some((x) => x.invalid === 'pages');
    if (!stream && !pages) continue;
    if ((await readError(m.bytes, pages)) === null)
      wrong.push(`case ${no}: ${m.mutations.map((x) => x.label).join(' + ')}`);
  }
  assert.equal(wrong, []);
});

test.run();
