// How `xenkvm run` reads a guest command line that starts with a dash.  yargs
// takes `--cmdline --foo` for two options, so before it parses:
//   --cmdline VALUE   the next argument is the value, whatever it starts
//                     with (as getopt treats an option with a required value);
//   --cmdline=VALUE   as it is;
//   -- WORDS...       everything after a `--` terminator is the command line,
//                     joined with single spaces (not combined with --cmdline).
// Both forms become `--cmdline=VALUE`, which yargs never splits.
import { UsageError } from '../errors.js';

export function normalizeRunArgv(argv: readonly string[]): string[] {
  if (argv[0] !== 'run') return [...argv];
  const out: string[] = [];
  let fromOption = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (fromOption) throw new UsageError('give the guest command line either with --cmdline or after --, not both');
      out.push(`--cmdline=${argv.slice(i + 1).join(' ')}`);
      return out;
    }
    if (a === '--cmdline' && i + 1 < argv.length) {
      out.push(`--cmdline=${argv[++i]!}`);
      fromOption = true;
      continue;
    }
    if (a.startsWith('--cmdline=')) fromOption = true;
    out.push(a);
  }
  return out;
}
