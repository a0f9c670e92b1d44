// What counts as a correct answer to a bad stream (issue 14): exit 0/1 with a
// guest that ran consistently, or exit 2 with one line on stderr naming the
// problem.  Everything else is a finding, named by the first rule it breaks.
import type { Command } from './cases.js';
import type { InvalidLayer, Mutation } from './mutate.js';

export interface Outcome {
  /** Exit status, null when the process (or worker) died by a signal or was killed. */
  exit: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  ms: number;
  /** An exception nothing caught (in a worker: it would have been a stack trace and a crash). */
  uncaught?: string;
  /** receive: the lines the destination answered, its answer, how the connection ended. */
  lines?: string[];
  answer?: string | null;
  sendError?: string | null;
}

export interface Verdict {
  /** Outcome class: ok, refused, ran, or a finding's name. */
  cls: string;
  finding: boolean;
  /** One line for grouping findings of one cause (numbers and paths blanked). */
  key: string;
}

/** What receive and restore say on stderr in a good run. */
const EXPECTED_STDERR =
  /^xenkvm: (waiting for a guest on|receiving a guest from|received [\d.]+ MiB in|guest running \(migrated from|.*skipped unknown optional record)/;

const STACK = /^\s+at |node:internal|FATAL ERROR|^Error: |^\s*\^$/m;

/** Layers whose rules each command must enforce (mutate.ts `invalid`). */
const ENFORCES: Readonly<Record<Command, readonly InvalidLayer[]>> = {
  inspect: ['stream', 'file'],
  diff: ['stream', 'file', 'pages'],
  schema: ['stream', 'file', 'schema'],
  restore: ['stream', 'file', 'pages', 'state'],
  receive: ['stream', 'live', 'pages', 'state'],
};

/**
 * Broken rules a command cannot see by design: a migration destination
 * answers at END and never reads what a source might send after it.
 */
const UNSEEN: Partial<Record<Command, RegExp>> = {
  receive: /^a record after END$|hypercall_page_gpa: .* \(all ones\)$/,
  // A short SYNC breaks only a live destination's rule (it reads SYNCs); a file's reader skips it.
  restore: /^record of type 0x80000010 inserted$|hypercall_page_gpa: .* \(all ones\)$/,
};
/** Lines that are warnings, not the error: a skipped unknown optional record. */
const WARNING = /skipped unknown optional record/;

export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '');
}

/** The message with numbers, offsets and paths blanked, so findings of one cause share a key. */
export function normalise(line: string): string {
  return line
    .replace(/\/[\w./-]+\.(xks|mig)/g, 'FILE')
    .replace(/\/tmp\/[\w./-]+/g, 'PATH')
    .replace(/0x[0-9a-f]+/gi, 'N')
    .replace(/\d+/g, 'N')
    .slice(0, 160);
}

function guestRan(o: Outcome): boolean {
  return /soak: |RESULT: |VIOLATION|\*\*\* EXCEPTION/.test(o.stdout);
}

function guestClean(o: Outcome): boolean {
  return /RESULT: PASS/.test(o.stdout) && !/VIOLATION|RESULT: FAIL|EXCEPTION/.test(o.stdout);
}

function lastError(o: Outcome): string {
  const l = errorLines(o.stderr).filter(
    (x) => !/waiting for a guest|receiving a guest from|^xenkvm: received /.test(x),
  );
  return l[l.length - 1] ?? '';
}

export function classify(command: Command, o: Outcome, mutations: readonly Mutation[]): Verdict {
  const f = (cls: string, why: string): Verdict => ({ cls, finding: true, key: `${cls}: ${normalise(why)}` });
  const ok = (cls: string): Verdict => ({ cls, finding: false, key: cls });
  const err = lastError(o);
  if (o.timedOut) {
    // The source gave its guest up at OK: a destination that then never ends lost it.
    if (command === 'receive' && o.answer?.startsWith('OK running'))
      return f('confirmed-then-failed', `no end in ${Math.round(o.ms / 1000)} s after OK running: ${guestVerdict(o)}`);
    return f('hang', `no end in ${Math.round(o.ms / 1000)} s${guestRan(o) ? ` (guest ran: ${guestVerdict(o)})` : ''}`);
  }
  if (o.signal !== null || o.exit === null) return f('crash', `killed by ${o.signal ?? 'an unknown cause'}: ${err}`);
  if (o.uncaught !== undefined) return f('stack-trace', `uncaught: ${o.uncaught.split('\n')[0]}`);
  if (STACK.test(o.stderr)) {
    const first = errorLines(o.stderr).find((l) => !/^xenkvm: (waiting|receiving)/.test(l)) ?? '';
    return f('stack-trace', first);
  }
  if (o.exit === 70) return f('exit-70', err);
  if (/internal error/.test(o.stderr)) return f('internal-error', err);
  const invalid = mutations.some(
    (m) => m.invalid !== null && ENFORCES[command].includes(m.invalid) && !UNSEEN[command]?.test(m.label),
  );

  // A guest that ran to its end, with nothing said on stderr but what the command says anyway.
  const ranClean = (): Verdict => {
    const extra = errorLines(o.stderr).filter((l) => !EXPECTED_STDERR.test(l));
    if (extra.length > 0) return f('error-while-running', extra[0]!);
    return invalid ? f('accepted-invalid', labelOf(command, mutations)) : ok('ran');
  };

  // A well-formed stream whose pages were replaced with random bytes: the
  // guest runs on garbage and may crash; no loader can know its memory is wrong.
  const ranOnGarbage = (): boolean =>
    mutations.some((m) => m.invalid === null && /random pages/.test(m.label)) &&
    /guest stopped by a fault/.test(o.stderr);

  if (command === 'receive') {
    const confirmed = o.answer?.startsWith('OK running') ?? false;
    if (confirmed) {
      if (o.exit === 0 && guestClean(o)) return ranClean();
      if (ranOnGarbage()) return ok('ran-on-garbage');
      return f('confirmed-then-failed', `exit ${o.exit}: ${guestVerdict(o)} ${err}`);
    }
    if (o.answer?.startsWith('ERR')) {
      if (guestRan(o)) return f('guest-died', `refused after the guest ran: ${err}`);
      // receive waits on after a refused source; the fuzzer then stops it (SIGINT, 130).
      if (o.exit === 1 || (o.exit === 130 && /waiting for another connection/.test(o.stderr))) return ok('refused');
      return f('unexpected-exit', `exit ${o.exit} after ERR: ${err}`);
    }
    return f('no-answer', `exit ${o.exit}, ${o.sendError ?? 'no answer'}: ${err}`);
  }

  if (command === 'restore') {
    if (guestRan(o)) {
      if (o.exit === 0 && guestClean(o)) return ranClean();
      if (ranOnGarbage()) return ok('ran-on-garbage');
      return f('guest-died', `exit ${o.exit}: ${guestVerdict(o)} ${err}`);
    }
    if (o.exit === 2) return oneLine(o) ? ok('refused') : f('multi-line', err);
    if (ranOnGarbage()) return ok('ran-on-garbage');
    // Ended without a word from the guest: a silent exit or a fault before its first line.
    return f('guest-died', `exit ${o.exit} with no guest output: ${err}`);
  }

  // inspect, diff, schema: exit 2 with one line, or their own success statuses.
  if (o.exit === 2) return oneLine(o) ? ok('refused') : f('multi-line', err);
  const success = command === 'inspect' ? o.exit === 0 : o.exit === 0 || o.exit === 1;
  if (!success) return f('unexpected-exit', `exit ${o.exit}: ${err}`);
  if (o.stderr.trim() !== '') {
    // Warnings (a skipped optional record) are fine; anything else on stderr with a success is odd.
    if (errorLines(o.stderr).some((l) => !WARNING.test(l))) return f('stderr-on-success', err);
  }
  return invalid ? f('accepted-invalid', labelOf(command, mutations)) : ok('ok');
}

function oneLine(o: Outcome): boolean {
  const l = errorLines(o.stderr).filter((x) => !WARNING.test(x));
  return l.length === 1 && l[0]!.startsWith('xenkvm: ');
}

function guestVerdict(o: Outcome): string {
  if (/VIOLATION/.test(o.stdout)) return 'VIOLATION';
  if (/EXCEPTION/.test(o.stdout)) return 'guest exception';
  if (/RESULT: FAIL/.test(o.stdout)) return 'RESULT: FAIL';
  if (/RESULT: PASS/.test(o.stdout)) return 'PASS';
  return 'no RESULT';
}

/** The mutation the command should have refused, its values left out: accepted-invalid findings group by it. */
function labelOf(command: Command, mutations: readonly Mutation[]): string {
  const m = mutations.find((x) => x.invalid !== null && ENFORCES[command].includes(x.invalid)) ?? mutations[0];
  return m ? m.label.replace(/: [^:]*? -> .*?( \([^)]*\))?$/, '$1') : '';
}
