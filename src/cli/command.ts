// One xenkvm command as main.ts hands it to yargs: its usage, what it does,
// its options, examples and epilogue, and what runs it.  main.ts loads
// command modules just to parse a command line (--help loads them all), so
// a command module's own imports stay light: what the command needs to run
// (the emulator, migration, the inspector) is imported when it runs.
import type { ArgumentsCamelCase, Argv } from 'yargs';

export interface CliCommand<A = object> {
  /** Name and positionals as yargs reads them: `run <elf>`. */
  readonly command: string;
  readonly describe: string;
  /** Commands under this one (`schema check`), registered before `builder` runs. */
  readonly subcommands?: readonly CliCommand[];
  /** Positionals, options, examples and epilogue. */
  builder(y: Argv): Argv<A>;
  /** Runs the command; resolves with its exit status. */
  run(args: ArgumentsCamelCase<A>): Promise<number>;
}

/** A command, its argument types inferred from its builder. */
export function defineCommand<A>(c: CliCommand<A>): CliCommand<A> {
  return c;
}
