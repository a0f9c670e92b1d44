// `npm run fuzz -- [--cases N] [--command inspect|diff|schema|restore|receive] [--seed S]`
//
// Structure-aware fuzzing of the commands that read streams (README.md in
// this directory): mutated streams (mutate.ts) from seed streams
// (make-seeds.ts and fixtures/snapshots/), each run by a pool of workers
// (pool.ts, worker.ts) and judged (classify.ts).  Prints a tally of outcomes
// per command; each finding prints its seed and case number and is saved
// under the findings directory with the command line that shows it.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { FORMAT_MAJOR, FORMAT_MINOR } from '../../src/migrate/stream/format.js';
import { spawnSync } from 'node:child_process';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, COMMANDS, loadSeed } from './cases.js';
import { classify, type Outcome, type Verdict } from './classify.js';
import type { InvalidLayer, Mutation } from './mutate.js';
import { runPool, type Started } from './pool.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GOLDEN = join(ROOT, 'fixtures', 'snapshots');

interface Args {
  cases: number;
  first: number;
  only: number | null;
  commands: Command[];
  seed: number;
  jobs: number;
  timeoutMs: number | null;
  processShare: number;
  findings: string;
  seeds: string;
  recycle: number;
  keep: number;
  show: boolean;
}

const USAGE = `usage: npm run fuzz -- [--cases N] [--command inspect|diff|schema|restore|receive]... [--seed S]
  [--case N]             run case N alone and print everything about it
  [--first N]            first case number (default 0)
  [--jobs N]             workers (default 2)
  [--timeout-ms N]       per case (default 6000; restore and receive 8000)
  [--process-share F]    share of cases run as a real xenkvm process (default 0.05; 1 = all)
  [--findings DIR]       where findings are saved (default fuzz-findings)
  [--seeds DIR]          seed streams, made there if missing (default dist/fuzz-seeds)
  [--recycle N]          cases per worker before it is replaced (default 150)
  [--keep N]             reproducers saved per kind of finding (default 3)`;

function parseArgs(argv: string[]): Args {
  const a: Args = {
    cases: 200,
    first: 0,
    only: null,
    commands: [],
    seed: Math.floor(Math.random() * 2 ** 31),
    jobs: 2,
    timeoutMs: null,
    processShare: 0.05,
    findings: resolve('fuzz-findings'),
    seeds: join(ROOT, 'dist', 'fuzz-seeds'),
    recycle: 150,
    keep: 3,
    show: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const num = (): number => {
      const x = Number(v());
      if (!Number.isFinite(x) || x < 0) throw new Error(`${k}: not a number`);
      return x;
    };
    if (k === '--cases') a.cases = num();
    else if (k === '--first') a.first = num();
    else if (k === '--case') a.only = num();
    else if (k === '--seed') a.seed = num() >>> 0;
    else if (k === '--jobs') a.jobs = Math.max(1, num());
    else if (k === '--timeout-ms') a.timeoutMs = num();
    else if (k === '--process-share') a.processShare = Math.min(1, num());
    else if (k === '--findings') a.findings = resolve(v());
    else if (k === '--seeds') a.seeds = resolve(v());
    else if (k === '--recycle') a.recycle = Math.max(1, num());
    else if (k === '--keep') a.keep = num();
    else if (k === '--command') {
      const c = v();
      if (!(COMMANDS as readonly string[]).includes(c))
        throw new Error(`--command must be one of ${COMMANDS.join(', ')}`);
      a.commands.push(c as Command);
    } else if (k === '--help' || k === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${k}`);
  }
  if (a.commands.length === 0) a.commands = [...COMMANDS];
  if (a.only !== null) a.show = true;
  return a;
}

const SEED_FILES = ['soak-2cpu.xks', 'soak-2cpu-deflate.xks', 'soak-1cpu.xks', 'small.xks'];

/** What the seeds were made from: streams of another format or guest build are made again. */
function seedStamp(): string {
  const elf = join(ROOT, 'fixtures', 'guest', 'build', 'guest.elf');
  const made = existsSync(elf) ? statSync(elf).mtimeMs : 0;
  return `format ${FORMAT_MAJOR}.${FORMAT_MINOR}, guest ${made}\n`;
}

function ensureSeeds(dir: string): void {
  const stamp = join(dir, 'STAMP');
  const fresh = existsSync(stamp) && readFileSync(stamp, 'utf8') === seedStamp();
  if (fresh && SEED_FILES.every((f) => existsSync(join(dir, f)))) return;
  console.log(`making seed streams in ${dir} (boots the soak guest three times)`);
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('./make-seeds.js', import.meta.url)), dir], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error('could not make the seed streams');
  writeFileSync(stamp, seedStamp());
}

/** The seeds each command is fuzzed from. */
function seedsFor(command: Command, dir: string): string[] {
  const own = (names: string[]): string[] => names.map((n) => join(dir, n));
  if (command === 'restore') return own(['soak-2cpu.xks', 'soak-2cpu-deflate.xks', 'soak-1cpu.xks']);
  if (command === 'receive') return own(['soak-2cpu.mig', 'soak-2cpu-deflate.mig', 'soak-1cpu.mig']);
  const golden = existsSync(GOLDEN)
    ? readdirSync(GOLDEN)
        .filter((f) => f.endsWith('.xks'))
        .map((f) => join(GOLDEN, f))
    : [];
  return [...own(SEED_FILES), ...golden];
}

interface Group {
  key: string;
  cls: string;
  count: number;
  cases: number[];
  saved: string[];
  stderr: string;
  labels: string[];
  argv: string[];
}

interface Tally {
  command: Command;
  counts: Map<string, number>;
  groups: Map<string, Group>;
  done: number;
  processCases: number;
  ms: number;
}

function saveFinding(a: Args, t: Tally, s: Started, o: Outcome, v: Verdict): string | null {
  const dir = join(a.findings, t.command, v.cls);
  mkdirSync(dir, { recursive: true });
  const stem = `seed${a.seed}-case${s.no}`;
  const saved: string[] = [];
  for (const f of s.files) {
    if (!existsSync(f)) continue;
    const to = join(dir, `${stem}-${basename(f).replace(/^\d+-/, '')}`);
    copyFileSync(f, to);
    saved.push(to);
  }
  const argv = s.argv.map((x) => {
    const i = s.files.indexOf(x);
    return i >= 0 && saved[i] ? saved[i]! : x;
  });
  writeFileSync(
    join(dir, `${stem}.txt`),
    [
      `command:  xenkvm ${argv.join(' ')}`,
      `replay:   npm run fuzz -- --command ${t.command} --seed ${a.seed} --case ${s.no}`,
      `seed:     ${s.seed}`,
      `mode:     ${s.process ? 'process' : 'in-process'}`,
      `class:    ${v.cls}`,
      `key:      ${v.key}`,
      `exit:     ${o.exit} signal ${o.signal} timedOut ${o.timedOut} in ${o.ms.toFixed(0)} ms`,
      ...(o.answer !== undefined ? [`answer:   ${o.answer}`, `lines:    ${JSON.stringify(o.lines)}`] : []),
      'mutations:',
      ...s.labels.map((l) => `  ${l}`),
      '--- stderr',
      o.stderr,
      ...(o.uncaught ? ['--- uncaught', o.uncaught] : []),
      '--- stdout (tail)',
      o.stdout.slice(-3000),
    ].join('\n'),
  );
  return saved[0] ?? join(dir, `${stem}.txt`);
}

function report(t: Tally, a: Args): void {
  const secs = t.ms / 1000;
  console.log(
    `\n== ${t.command}: ${t.done} cases in ${secs.toFixed(0)} s (${(t.done / secs).toFixed(1)} cases/s, ${a.jobs} workers, ${t.processCases} as processes), seed ${a.seed}`,
  );
  const counts = [...t.counts.entries()].sort((x, y) => y[1] - x[1]);
  console.log(`   tally: ${counts.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const groups = [...t.groups.values()].sort((x, y) => y.count - x.count);
  for (const g of groups) {
    console.log(`   [${g.cls}] x${g.count}  ${g.key}`);
    console.log(`      e.g. case ${g.cases[0]} (${g.cases.slice(0, 6).join(', ')}${g.cases.length > 6 ? ', …' : ''})`);
    console.log(`      mutation: ${g.labels.join(' + ')}`);
    if (g.saved[0]) console.log(`      reproducer: ${g.saved[0]}`);
    console.log(`      stderr: ${g.stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 400)}`);
  }
}

async function runCommand(a: Args, command: Command): Promise<Tally> {
  const seeds = seedsFor(command, a.seeds);
  const timeoutMs = a.timeoutMs ?? (command === 'restore' || command === 'receive' ? 8_000 : 6_000);
  const scratch = join(a.findings, '.scratch', command);
  rmSync(scratch, { recursive: true, force: true });
  const t: Tally = { command, counts: new Map(), groups: new Map(), done: 0, processCases: 0, ms: 0 };
  const t0 = performance.now();
  let lastPrint = t0;
  const numbers = a.only !== null ? [a.only] : Array.from({ length: a.cases }, (_, i) => a.first + i);
  await runPool(numbers, {
    init: { command, seeds, runSeed: a.seed, processShare: a.processShare, timeoutMs },
    dir: scratch,
    jobs: a.only !== null ? 1 : a.jobs,
    recycle: a.recycle,
    onBroken: (no, text) => {
      t.counts.set('fuzzer-error', (t.counts.get('fuzzer-error') ?? 0) + 1);
      console.error(`fuzz: case ${no} could not be made (a bug in the fuzzer): ${text}`);
    },
    onResult: (s, o) => {
      const c = mutationsOf(s);
      const v = classify(command, o, c);
      t.done++;
      if (s.process) t.processCases++;
      t.counts.set(v.cls, (t.counts.get(v.cls) ?? 0) + 1);
      if (v.finding) {
        let g = t.groups.get(v.key);
        if (!g) {
          g = {
            key: v.key,
            cls: v.cls,
            count: 0,
            cases: [],
            saved: [],
            stderr: o.stderr || o.uncaught || '',
            labels: s.labels,
            argv: s.argv,
          };
          t.groups.set(v.key, g);
        }
        g.count++;
        g.cases.push(s.no);
        if (g.saved.length < a.keep) {
          const p = saveFinding(a, t, s, o, v);
          if (p) g.saved.push(p);
        }
        if (g.count === 1 || a.show)
          console.log(
            `finding: ${command} seed ${a.seed} case ${s.no}: [${v.cls}] ${v.key}${g.saved[0] ? `\n   saved: ${g.saved[g.saved.length - 1]}` : ''}`,
          );
      }
      if (a.show) {
        console.log(
          `case ${s.no}: xenkvm ${s.argv.join(' ')}\n  ${s.labels.join('\n  ')}\n  -> ${v.cls}: exit ${o.exit} ${o.signal ?? ''} ${o.timedOut ? 'timed out' : ''}`,
        );
        if (o.answer !== undefined) console.log(`  answer: ${o.answer}`);
        console.log(`  stderr: ${o.stderr.trim()}\n  stdout: ${o.stdout.trim().slice(-800)}`);
        if (o.uncaught) console.log(`  uncaught: ${o.uncaught}`);
      }
      for (const f of s.files) rmSync(f, { force: true });
      const now = performance.now();
      if (now - lastPrint > 15_000) {
        lastPrint = now;
        const rate = t.done / ((now - t0) / 1000);
        console.log(
          `${command}: ${t.done}/${numbers.length} cases, ${rate.toFixed(1)}/s, ${t.groups.size} kinds of finding`,
        );
      }
    },
  });
  t.ms = performance.now() - t0;
  rmSync(scratch, { recursive: true, force: true });
  return t;
}

/** The mutations' layers as the worker described them (labels carry `[invalid: layer]`). */
function mutationsOf(s: Started): Mutation[] {
  return s.labels.map((l) => {
    const m = /\[invalid: (stream|file|live|pages|state|schema)\]$/.exec(l);
    return { label: l.replace(/ \[invalid: \w+\]$/, ''), invalid: (m?.[1] as InvalidLayer | undefined) ?? null };
  });
}

async function main(): Promise<void> {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  ensureSeeds(a.seeds);
  // Loading a seed checks it parses; the workers load their own.
  for (const c of a.commands) for (const p of seedsFor(c, a.seeds)) loadSeed(p);
  console.log(
    `fuzz: seed ${a.seed}, ${a.only !== null ? `case ${a.only}` : `${a.cases} cases`} of ${a.commands.join(', ')}; findings in ${a.findings}`,
  );
  const tallies: Tally[] = [];
  for (const c of a.commands) tallies.push(await runCommand(a, c));
  console.log('\n==== tally');
  for (const t of tallies) report(t, a);
  const findings = tallies.reduce((n, t) => n + [...t.groups.values()].reduce((m, g) => m + g.count, 0), 0);
  mkdirSync(a.findings, { recursive: true });
  writeFileSync(
    join(a.findings, `summary-seed${a.seed}.json`),
    JSON.stringify(
      tallies.map((t) => ({
        command: t.command,
        cases: t.done,
        seconds: t.ms / 1000,
        casesPerSecond: t.done / (t.ms / 1000),
        processCases: t.processCases,
        tally: Object.fromEntries(t.counts),
        findings: [...t.groups.values()].map((g) => ({
          cls: g.cls,
          key: g.key,
          count: g.count,
          cases: g.cases.slice(0, 20),
          reproducers: g.saved,
          stderr: g.stderr.slice(0, 2000),
          mutation: g.labels,
        })),
      })),
      null,
      2,
    ),
  );
  console.log(`\n${findings} finding(s); summary in ${join(a.findings, `summary-seed${a.seed}.json`)}`);
  process.exitCode = findings > 0 ? 1 : 0;
}

await main();
