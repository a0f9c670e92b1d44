// `npm run bench -- [name...] [--json] [--list]`: runs the named benches (see
// registry.ts); with no name, lists them and runs the quick ones.  --json
// moves the human-readable output to stderr and prints one JSON document
// {results: {name: result}} on stdout, for scripts.
import { BENCHES, type BenchEntry, type BenchResult } from './registry.js';

const USAGE = 'usage: npm run bench -- [name...] [--json] [--list]';

function list(): string {
  const w = Math.max(...BENCHES.map((b) => b.name.length));
  return BENCHES.map((b) => `  ${b.name.padEnd(w)}  ${b.quick ? '      ' : '(slow)'}  ${b.summary}`).join('\n');
}

async function main(argv: string[]): Promise<number> {
  const flags = argv.filter((a) => a.startsWith('-'));
  const names = argv.filter((a) => !a.startsWith('-'));
  for (const f of flags) {
    if (f === '--help' || f === '-h') {
      console.log(`${USAGE}\n\nbenches:\n${list()}\n\nWith no name, the quick ones run.`);
      return 0;
    }
    if (f !== '--json' && f !== '--list') {
      console.error(`bench: unknown option ${f}\n${USAGE}`);
      return 2;
    }
  }
  if (flags.includes('--list')) {
    console.log(list());
    return 0;
  }
  const json = flags.includes('--json');
  const human = json ? console.error.bind(console) : console.log.bind(console);
  if (json) console.log = human; // benches print with console.log; keep stdout for the JSON

  let chosen: BenchEntry[];
  if (names.length === 0) {
    human(`benches:\n${list()}\nrunning the quick ones (name them to run others)\n`);
    chosen = BENCHES.filter((b) => b.quick);
  } else {
    const unknown = names.filter((n) => !BENCHES.some((b) => b.name === n));
    if (unknown.length > 0) {
      console.error(`bench: unknown bench ${unknown.join(', ')}; known:\n${list()}`);
      return 2;
    }
    chosen = [...new Set(names)].map((n) => BENCHES.find((b) => b.name === n)!);
  }

  const results: Record<string, BenchResult | { error: string }> = {};
  let failed = 0;
  for (const b of chosen) {
    human(`== ${b.name}`);
    const t0 = performance.now();
    try {
      results[b.name] = (await b.run()) ?? {};
      human(`== ${b.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    } catch (e) {
      failed++;
      const msg = e instanceof Error ? e.message : String(e);
      results[b.name] = { error: msg };
      console.error(`== ${b.name}: FAILED: ${msg}\n`);
    }
  }
  if (json) {
    process.stdout.write(
      JSON.stringify({ results }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n',
    );
  }
  return failed > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  },
);
