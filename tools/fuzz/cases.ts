// One fuzz case: which seed, which mutation, which files and which command
// line, all drawn from the case's own generator (the run's seed and the case
// number), so a case is the same whichever worker runs it and in what order.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';
import type { SectionSchema } from '../../src/vmstate/schema.js';
import { RecordType } from '../../src/migrate/stream/format.js';
import { type MutatedStream, mutateStream, type SeedInfo } from './mutate.js';
import { Rng } from './rng.js';
import { decodeMsgpack, type ParsedStream, parseStream, ramPfns, sectionOf } from './stream.js';

export const COMMANDS = ['inspect', 'diff', 'schema', 'restore', 'receive'] as const;
export type Command = (typeof COMMANDS)[number];

export interface Seed {
  readonly path: string;
  readonly name: string;
  readonly parsed: ParsedStream;
  readonly info: SeedInfo;
}

/** A file the case needs: written by the worker before the command runs. */
export interface CaseFile {
  readonly name: string;
  readonly bytes: Uint8Array;
}

export interface Case {
  readonly no: number;
  readonly command: Command;
  readonly seed: string;
  readonly mutations: MutatedStream['mutations'];
  /** `argv` for bin/xenkvm.js; `{0}`, `{1}` stand for the files' paths. */
  readonly argv: readonly string[];
  readonly files: readonly CaseFile[];
  /** receive: the bytes to send. */
  readonly send?: Uint8Array;
  /** Run through a real xenkvm process rather than in the worker. */
  readonly process: boolean;
}

const zeroDeflates = new Map<number, Uint8Array>();
const WINDOW = Buffer.alloc(32 << 10);
let zeroChunk: Uint8Array | null = null;
const CHUNK = 16 << 20;

/**
 * Raw DEFLATE of `n` zero bytes, memoised.  Long ones are built from parts
 * instead of deflating n bytes: 32 KiB of zeros flushed to a byte boundary,
 * then a 16 MiB chunk repeated (compressed against a window of zeros, which
 * is what precedes it whenever it is inflated), then the rest; so an
 * over-long batch of 256 MiB costs a few ms to make, not a second.
 */
function zeros(n: number): Uint8Array {
  let z = zeroDeflates.get(n);
  if (z) return z;
  if (n <= 2 * WINDOW.length) z = deflateRawSync(Buffer.alloc(Math.max(0, n)), { level: 9 });
  else {
    zeroChunk ??= deflateRawSync(Buffer.alloc(CHUNK), {
      level: 9,
      dictionary: WINDOW,
      finishFlush: constants.Z_SYNC_FLUSH,
    });
    const rest = n - WINDOW.length;
    const k = Math.floor(rest / CHUNK);
    const parts: Uint8Array[] = [deflateRawSync(WINDOW, { level: 9, finishFlush: constants.Z_SYNC_FLUSH })];
    for (let i = 0; i < k; i++) parts.push(zeroChunk);
    parts.push(deflateRawSync(Buffer.alloc(rest - k * CHUNK), { level: 9, dictionary: WINDOW }));
    z = Buffer.concat(parts);
  }
  zeroDeflates.set(n, z);
  return z;
}

export function loadSeed(path: string): Seed {
  const parsed = parseStream(readFileSync(path));
  const header = decodeMsgpack(parsed.records[0]!.body) as {
    machine?: { memBytes?: number; vcpus?: number };
    schemas: Record<string, SectionSchema>;
  };
  let nrPorts = 0;
  let maxPfn = 0;
  for (const r of parsed.records) {
    if (r.type === RecordType.RAM_PAGES) for (const p of ramPfns(r.body)) maxPfn = Math.max(maxPfn, Number(p));
    if (r.type !== RecordType.SECTION) continue;
    const s = sectionOf(r);
    const f = (s?.payload as { f?: unknown[] } | null | undefined)?.f;
    if (s?.name === 'xen_evtchn' && Array.isArray(f) && typeof f[1] === 'number') nrPorts = f[1];
  }
  return {
    path,
    name: basename(path),
    parsed,
    info: {
      name: basename(path),
      memBytes: header.machine?.memBytes ?? 16 << 20,
      vcpus: header.machine?.vcpus ?? 1,
      nrPorts,
      maxPfn,
      schemas: header.schemas,
      zeros,
    },
  };
}

/** Section names `inspect -s` accepts, for the seeds' machines. */
const SECTION_ARGS = [
  'cpu',
  'cpu[0]',
  'cpu[1]',
  'cpu/xen_vcpu',
  'cpu[1]/xen_vcpu',
  'xen_evtchn',
  'xen_overlay',
  'kvmclock',
  'xen_time',
  'irqchip',
  'xen_hvm',
];

export interface CaseOptions {
  readonly runSeed: number;
  /** Share of cases run as a real xenkvm process (0..1). */
  readonly processShare: number;
}

/** Case `no` of `command` over `seeds` (those fit for the command). */
export function makeCase(command: Command, seeds: readonly Seed[], no: number, opts: CaseOptions): Case {
  const r = new Rng(opts.runSeed, no * 8 + COMMANDS.indexOf(command));
  const seed = r.pick(seeds);
  const m = mutateStream(seed.parsed, seed.info, r);
  const proc = r.chance(opts.processShare);
  const base = { no, command, seed: seed.name, mutations: m.mutations, process: proc };
  const mutated: CaseFile = { name: 'a.xks', bytes: m.bytes };
  switch (command) {
    case 'inspect': {
      const argv = ['inspect', '{0}'];
      if (r.chance(0.4)) argv.push('-s', r.pick(SECTION_ARGS));
      if (r.chance(0.3)) argv.push('--json');
      return { ...base, argv, files: [mutated] };
    }
    case 'diff': {
      // Against the seed itself, or two mutations of it; either side first.
      const other: CaseFile = r.chance(0.7)
        ? { name: 'b.xks', bytes: readFileSync(seed.path) }
        : { name: 'b.xks', bytes: mutateStream(seed.parsed, seed.info, r).bytes };
      const files = r.chance(0.5) ? [mutated, other] : [other, mutated];
      const argv = ['diff', '{0}', '{1}'];
      if (r.chance(0.3)) argv.push('--pages');
      if (r.chance(0.2)) argv.push('--hexdump', r.pick(['0x0,64', '0x1000', `${seed.info.memBytes - 16},16`]));
      if (r.chance(0.2)) argv.push('--ignore-volatile');
      if (r.chance(0.2)) argv.push('--json');
      return { ...base, argv, files };
    }
    case 'schema': {
      const other: CaseFile = { name: 'b.xks', bytes: readFileSync(seed.path) };
      const form = r.below(3);
      const argv =
        form === 0
          ? ['schema', 'check', '{0}']
          : form === 1
            ? ['schema', 'check', '{0}', '{1}']
            : ['schema', 'check', '{1}', '{0}'];
      if (r.chance(0.3)) argv.push('--direction', r.pick(['old-in-new', 'new-in-old', 'both']));
      if (r.chance(0.2)) argv.push('--json');
      return { ...base, argv, files: form === 0 ? [mutated] : [mutated, other] };
    }
    case 'restore': {
      const argv = ['restore', '{0}', '--quiet'];
      if (r.chance(0.25)) argv.push('--eager');
      return { ...base, argv, files: [mutated] };
    }
    case 'receive':
      return { ...base, argv: ['receive', '--listen', 'tcp:127.0.0.1:0', '--quiet'], files: [mutated], send: m.bytes };
  }
}
