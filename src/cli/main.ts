// The xenkvm command line.  Thin: parse, call the library, print.  Every
// XenkvmError becomes one line on stderr and a documented exit status.
import { UsageError, XenkvmError } from '../errors.js';
import { EXIT } from './exit-codes.js';
import type { RestoreArgs } from './restore.js';
import type { CliCommand } from './command.js';
import type { Argv } from 'yargs';
import { normalizeRunArgv } from './run-argv.js';

function fail(e: unknown): number {
  if (e instanceof XenkvmError) {
    process.stderr.write(`xenkvm: ${e.message}\n`);
    return e.code === 'E_USAGE' ||
      e.code === 'E_INPUT' ||
      e.code === 'E_ELF' ||
      e.code === 'E_FORMAT' ||
      e.code === 'E_NO_KVM' ||
      e.code === 'E_VMSTATE' ||
      e.code === 'E_IO'
      ? EXIT.usage
      : EXIT.internal;
  }
  process.stderr.write(`xenkvm: internal error: ${(e as Error)?.message ?? String(e)}\n`);
  if (process.env.XENKVM_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
  return EXIT.internal;
}

/**
 * `restore FILE [--qmp SOCK] [--quiet] [--eager]`, and nothing else, parsed without
 * yargs: loading yargs takes 90-120 ms here, a tenth of a restore (issue 5).
 * Anything this does not recognise (--help, any other option, a repeated
 * one, a second positional, a value starting with `-`) is left to yargs,
 * so usage errors and help read as for every other command.
 */
export function parseRestoreFast(argv: readonly string[]): RestoreArgs | null {
  if (argv[0] !== 'restore') return null;
  let file: string | undefined;
  let qmp: string | undefined;
  let quiet = false;
  let eager = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quiet') {
      if (quiet) return null;
      quiet = true;
    } else if (a === '--eager') {
      if (eager) return null;
      eager = true;
    } else if (a === '--qmp' || a.startsWith('--qmp=')) {
      const v = a === '--qmp' ? argv[++i] : a.slice('--qmp='.length);
      if (qmp !== undefined || v === undefined || v === '' || v.startsWith('-')) return null;
      qmp = v;
    } else if (a.startsWith('-') || file !== undefined || a === '') {
      return null;
    } else {
      file = a;
    }
  }
  return file === undefined ? null : { file, qmp, quiet, eager };
}

/** The command modules by name, in the order --help lists them. */
const COMMANDS = {
  run: () => import('./run.js'),
  snapshot: () => import('./snapshot.js'),
  restore: () => import('./restore.js'),
  receive: () => import('./receive.js'),
  migrate: () => import('./migrate.js'),
  ctl: () => import('./ctl.js'),
  console: () => import('./console.js'),
  inspect: () => import('./inspect.js'),
  diff: () => import('./diff.js'),
  schema: () => import('./schema.js'),
  demo: () => import('./demo.js'),
} as const;

/**
 * The commands yargs needs to parse `argv`: the one its first word names,
 * or else (--help, no command, a usage error) all of them.  A command
 * module loads what runs it only when it runs (command.ts); loading the
 * emulator, the inspector and migration for every invocation cost ~150 ms.
 */
async function loadCommands(argv: readonly string[]): Promise<readonly CliCommand[]> {
  const first = argv[0];
  const loaders =
    first !== undefined && Object.hasOwn(COMMANDS, first)
      ? [COMMANDS[first as keyof typeof COMMANDS]]
      : Object.values(COMMANDS);
  return (await Promise.all(loaders.map((load) => load()))).map((m) => m.command);
}

/** Adds `c` (and its subcommands) to `y`; its exit status goes to `settle`. */
function register(y: Argv, c: CliCommand, settle: (status: Promise<number>) => Promise<void>): Argv {
  return y.command(
    c.command,
    c.describe,
    (b) => c.builder((c.subcommands ?? []).reduce((inner, sub) => register(inner, sub, settle), b)),
    (a) => settle(c.run(a)),
  );
}

export async function main(argv: string[]): Promise<void> {
  let status: number = EXIT.ok;
  const setStatus = (p: Promise<number>) =>
    p.then(
      (s) => {
        status = s;
      },
      (e) => {
        status = fail(e);
      },
    );
  const restore = parseRestoreFast(argv);
  if (restore) {
    await setStatus(import('./restore.js').then((m) => m.restoreCommand(restore)));
    process.exitCode = status;
    return;
  }
  try {
    const [{ default: yargs }, commands] = await Promise.all([import('yargs'), loadCommands(argv)]);
    let y = yargs(normalizeRunArgv(argv))
      .scriptName('xenkvm')
      .usage('$0 <command> [options]\n\nRun Xen PVH/HVM guests on Linux KVM.');
    for (const c of commands) y = register(y, c, setStatus);
    await y
      .demandCommand(
        1,
        'name a command: run, snapshot, restore, migrate, receive, ctl, console, inspect, diff, schema, demo (see --help)',
      )
      .strict()
      .fail((msg, err) => {
        if (err) throw err;
        // Thrown, not just reported: yargs would otherwise still run the command's handler.
        throw new UsageError(`${msg}\n(try: xenkvm --help)`);
      })
      .help()
      .alias('h', 'help')
      .version(false)
      .wrap(Math.min(100, process.stdout.columns || 100))
      .parseAsync();
  } catch (e) {
    status = fail(e);
  }
  process.exitCode = status;
}
