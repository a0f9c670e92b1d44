// A small pool of fuzz workers (worker.ts): hands out case numbers, times
// each case, and replaces a worker that hung, died or has run its share of
// cases (machines leave threads and mappings behind in a long-lived process).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Outcome } from './classify.js';
import type { FromWorker, WorkerInit } from './worker.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

export interface Started {
  no: number;
  files: string[];
  argv: string[];
  labels: string[];
  process: boolean;
  seed: string;
}

export interface PoolOptions {
  init: Omit<WorkerInit, 'dir'>;
  /** Scratch directory; worker k writes under `${dir}/w${k}`. */
  dir: string;
  jobs: number;
  /** Cases per worker before it is replaced. */
  recycle: number;
  /** Called once per case with what ran and how it ended. */
  onResult: (started: Started, outcome: Outcome) => void;
  /** Called for a case the fuzzer itself could not make (its bug, counted apart). */
  onBroken: (no: number, text: string) => void;
}

interface Slot {
  k: number;
  child: ChildProcess | null;
  ready: boolean;
  current: Started | null;
  /** The number handed out, before the worker said 'start'. */
  asked: number | null;
  timer: NodeJS.Timeout | null;
  ran: number;
  uncaught: string | null;
  generation: number;
  /** The running case's output so far (in-process cases report it every second). */
  partial: { stdout: string; stderr: string; answer: string | null } | null;
}

export async function runPool(cases: Iterable<number>, opts: PoolOptions): Promise<void> {
  const it = cases[Symbol.iterator]();
  let exhausted = false;
  let running = 0;
  let resolveAll: () => void = () => {};
  const all = new Promise<void>((r) => (resolveAll = r));
  const slots: Slot[] = [];

  const next = (): number | null => {
    if (exhausted) return null;
    const n = it.next();
    if (n.done) {
      exhausted = true;
      return null;
    }
    return n.value;
  };

  const finish = (slot: Slot, outcome: Outcome): void => {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
    const started = slot.current;
    slot.current = null;
    slot.asked = null;
    running--;
    if (started) opts.onResult(started, outcome);
  };

  const dispatch = (slot: Slot): void => {
    if (!slot.ready || slot.asked !== null || !slot.child) return;
    if (slot.ran >= opts.recycle) {
      replace(slot);
      return;
    }
    const no = next();
    if (no === null) {
      slot.generation++; // its exit is expected: no replacement
      slot.child.kill('SIGKILL');
      slot.child = null;
      if (running === 0 && slots.every((s) => s.asked === null)) resolveAll();
      return;
    }
    slot.asked = no;
    slot.ran++;
    running++;
    slot.child.send({ kind: 'case', no });
  };

  const spawnWorker = (slot: Slot): void => {
    const gen = ++slot.generation;
    slot.ready = false;
    slot.ran = 0;
    slot.uncaught = null;
    const init: WorkerInit = { ...opts.init, dir: join(opts.dir, `w${slot.k}`) };
    const child = fork(WORKER, [], {
      env: { ...process.env, XENKVM_FUZZ_WORKER: JSON.stringify(init) },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    slot.child = child;
    child.on('message', (m: FromWorker) => {
      if (gen !== slot.generation) return;
      if (m.kind === 'ready') {
        slot.ready = true;
        dispatch(slot);
      } else if (m.kind === 'start') {
        slot.current = { no: m.no, files: m.files, argv: m.argv, labels: m.labels, process: m.process, seed: m.seed };
        // A process case times itself out (worker.ts); this is the backstop.
        const limit = opts.init.timeoutMs + (m.process ? 10_000 : 0);
        slot.partial = null;
        slot.timer = setTimeout(() => {
          const p = slot.partial;
          const o: Outcome = {
            exit: null,
            signal: null,
            timedOut: true,
            stdout: p?.stdout ?? '',
            stderr: p?.stderr ?? '',
            ms: limit,
            ...(p?.answer ? { answer: p.answer } : {}),
          };
          finish(slot, o);
          replace(slot);
        }, limit);
      } else if (m.kind === 'done') {
        finish(slot, m.outcome);
        dispatch(slot);
      } else if (m.kind === 'output') {
        if (slot.current?.no === m.no) slot.partial = { stdout: m.stdout, stderr: m.stderr, answer: m.answer };
      } else if (m.kind === 'broken') {
        opts.onBroken(m.no, m.text);
        running--;
        slot.asked = null;
        dispatch(slot);
      } else if (m.kind === 'uncaught') {
        slot.uncaught = m.text;
      }
    });
    child.on('exit', (code, signal) => {
      if (gen !== slot.generation) return;
      if (slot.asked !== null) {
        const o: Outcome = {
          exit: null,
          signal: signal ?? `exit ${code}`,
          timedOut: false,
          stdout: slot.partial?.stdout ?? '',
          stderr: slot.partial?.stderr ?? '',
          ms: 0,
          ...(slot.uncaught !== null ? { uncaught: slot.uncaught } : {}),
        };
        if (slot.current) finish(slot, o);
        else {
          running--;
          slot.asked = null;
        }
      }
      spawnWorker(slot);
    });
  };

  const replace = (slot: Slot): void => {
    const old = slot.child;
    slot.generation++;
    slot.child = null;
    old?.kill('SIGKILL');
    if (slot.asked !== null) {
      running--;
      slot.asked = null;
    }
    spawnWorker(slot);
  };

  for (let k = 0; k < Math.max(1, opts.jobs); k++) {
    const slot: Slot = {
      k,
      child: null,
      ready: false,
      current: null,
      asked: null,
      timer: null,
      ran: 0,
      uncaught: null,
      generation: 0,
      partial: null,
    };
    slots.push(slot);
    spawnWorker(slot);
  }
  await all;
}
