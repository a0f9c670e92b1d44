// A fuzz worker: a child process that runs cases one at a time and reports
// each outcome to the pool (pool.ts) over IPC.
//
// Most cases run in this process through the CLI's own entry point, `main()`
// of src/cli/main.ts, with process.stdout/stderr captured: the same
// argument parsing, command modules, error reporting and exit status as
// `xenkvm`, without starting Node for each case (~0.5 s here).  A share of
// cases (`--process-share`) runs `bin/xenkvm.js` in a real child process to
// keep the in-process results honest: stack traces, exit codes set by
// Node itself, and a process that does not exit all only show there.
// A case that never ends, or that kills its process, is the pool's to
// notice: it kills this worker and starts another.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Case, type Command, loadSeed, makeCase, type Seed } from './cases.js';
import type { Outcome } from './classify.js';
import { sendStream } from './sender.js';

const BIN = fileURLToPath(new URL('../../../bin/xenkvm.js', import.meta.url));

export interface WorkerInit {
  command: Command;
  seeds: string[];
  runSeed: number;
  processShare: number;
  /** This worker's scratch directory: each case's files are written here. */
  dir: string;
  timeoutMs: number;
}

export type ToWorker = { kind: 'case'; no: number };
export type FromWorker =
  | { kind: 'ready' }
  | { kind: 'start'; no: number; files: string[]; argv: string[]; labels: string[]; process: boolean; seed: string }
  | { kind: 'done'; no: number; outcome: Outcome }
  /** What an in-process case has said so far: all a hang leaves to report. */
  | { kind: 'output'; no: number; stdout: string; stderr: string; answer: string | null }
  | { kind: 'uncaught'; text: string }
  | { kind: 'broken'; no: number; text: string };

const send = (m: FromWorker): void => {
  process.send!(m);
};

/** Debug output that bypasses the captured streams. */
const log = (s: string): void => {
  writeSync(2, `fuzz worker ${process.pid}: ${s}\n`);
};

// ---- in-process runs ----------------------------------------------------------------

interface Capture {
  stdout: string;
  stderr: string;
  restore(): void;
  /** Resolves when stderr matches `re`, or with null after `ms`. */
  waitErr(re: RegExp, ms: number): Promise<RegExpExecArray | null>;
}

function capture(): Capture {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const c: Capture = {
    stdout: '',
    stderr: '',
    restore: () => {
      process.stdout.write = out;
      process.stderr.write = err;
    },
    waitErr: async (re, ms) => {
      const until = Date.now() + ms;
      for (;;) {
        const m = re.exec(c.stderr);
        if (m || Date.now() > until) return m;
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
  const text = (chunk: unknown): string =>
    typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1');
  // Keep the tails only: a guest's console can be long.
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    c.stdout = (c.stdout + text(chunk)).slice(-20_000);
    const cb = rest.find((x) => typeof x === 'function') as (() => void) | undefined;
    if (cb) queueMicrotask(cb);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    c.stderr = (c.stderr + text(chunk)).slice(-20_000);
    const cb = rest.find((x) => typeof x === 'function') as (() => void) | undefined;
    if (cb) queueMicrotask(cb);
    return true;
  }) as typeof process.stderr.write;
  return c;
}

let cliMain: ((argv: string[]) => Promise<void>) | null = null;

async function runInProcess(c: Case, argv: string[], timeoutMs: number): Promise<Outcome> {
  cliMain ??= (await import('../../src/cli/main.js')).main;
  const t0 = performance.now();
  const cap = capture();
  process.exitCode = undefined;
  let answer: string | null = null;
  const report = setInterval(
    () => send({ kind: 'output', no: c.no, stdout: cap.stdout.slice(-4000), stderr: cap.stderr.slice(-4000), answer }),
    1000,
  );
  try {
    const done = cliMain(argv);
    let sent: Awaited<ReturnType<typeof sendStream>> | null = null;
    if (c.command === 'receive') {
      const m = await cap.waitErr(/waiting for a guest on tcp:([\d.]+):(\d+)/, 10_000);
      const onLine = (l: string): void => {
        if (/^(OK|ERR)/.test(l)) answer ??= l;
      };
      if (m) sent = await sendStream(m[1]!, Number(m[2]), c.send!, timeoutMs, onLine);
      // A refused source leaves receive listening for the next one: once it says so, stop it as a user would.
      if (sent?.answer?.startsWith('ERR') && (await cap.waitErr(/waiting for another connection/, 10_000)))
        process.emit('SIGINT');
    }
    await done;
    const exit = typeof process.exitCode === 'number' ? process.exitCode : 0;
    return {
      exit,
      signal: null,
      timedOut: false,
      stdout: cap.stdout,
      stderr: cap.stderr,
      ms: performance.now() - t0,
      ...(sent ? { lines: sent.lines, answer: sent.answer, sendError: sent.error } : {}),
    };
  } finally {
    clearInterval(report);
    cap.restore();
    process.exitCode = undefined;
  }
}

// ---- process runs ---------------------------------------------------------------------

function runAsProcess(c: Case, argv: string[], timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let stopped = false;
    let sending: Promise<Awaited<ReturnType<typeof sendStream>>> | null = null;
    child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString('latin1')).slice(-20_000)));
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('latin1')).slice(-20_000);
      const m = c.command === 'receive' && !sending ? /waiting for a guest on tcp:([\d.]+):(\d+)/.exec(stderr) : null;
      if (m) sending = sendStream(m[1]!, Number(m[2]), c.send!, timeoutMs);
      // A refused source leaves receive listening for the next one: stop it as a user would.
      if (c.command === 'receive' && !stopped && /waiting for another connection/.test(stderr)) {
        stopped = true;
        child.kill('SIGINT');
      }
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      void (sending ?? Promise.resolve(null)).then((sent) =>
        resolve({
          exit: code,
          signal: timedOut ? null : signal,
          timedOut,
          stdout,
          stderr,
          ms: performance.now() - t0,
          ...(sent ? { lines: sent.lines, answer: sent.answer, sendError: sent.error } : {}),
        }),
      );
    });
  });
}

// ---- the loop -------------------------------------------------------------------------

async function workerMain(): Promise<void> {
  const init = JSON.parse(process.env['XENKVM_FUZZ_WORKER']!) as WorkerInit;
  const seeds: Seed[] = init.seeds.map(loadSeed);
  mkdirSync(init.dir, { recursive: true });
  // In-process, nothing may escape unnoticed: an uncaught error would have been a stack trace.
  const onUncaught = (e: unknown): void => {
    send({ kind: 'uncaught', text: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    // The process state is unknown now: the pool starts a fresh worker.
    setTimeout(() => process.exit(99), 50);
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  let queue = Promise.resolve();
  process.on('message', (m: ToWorker) => {
    if (m.kind !== 'case') return;
    queue = queue.then(async () => {
      let c: Case;
      try {
        c = makeCase(init.command, seeds, m.no, { runSeed: init.runSeed, processShare: init.processShare });
      } catch (e) {
        // The fuzzer's own bug, not the command's: reported as such.
        send({ kind: 'broken', no: m.no, text: e instanceof Error ? (e.stack ?? e.message) : String(e) });
        return;
      }
      const paths = c.files.map((f) => join(init.dir, `${m.no}-${f.name}`));
      c.files.forEach((f, i) => writeFileSync(paths[i]!, f.bytes));
      const argv = c.argv.map((a) => a.replace(/\{(\d)\}/, (_, i: string) => paths[Number(i)]!));
      send({
        kind: 'start',
        no: m.no,
        files: paths,
        argv,
        labels: c.mutations.map((x) => `${x.label}${x.invalid ? ` [invalid: ${x.invalid}]` : ''}`),
        process: c.process,
        seed: c.seed,
      });
      let outcome: Outcome;
      try {
        outcome = c.process ? await runAsProcess(c, argv, init.timeoutMs) : await runInProcess(c, argv, init.timeoutMs);
      } catch (e) {
        outcome = {
          exit: null,
          signal: null,
          timedOut: false,
          stdout: '',
          stderr: '',
          ms: 0,
          uncaught: e instanceof Error ? (e.stack ?? e.message) : String(e),
        };
      }
      send({ kind: 'done', no: m.no, outcome });
    });
  });
  send({ kind: 'ready' });
}

if (process.env['XENKVM_FUZZ_WORKER']) {
  workerMain().catch((e: unknown) => {
    log(`cannot start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(98);
  });
}
