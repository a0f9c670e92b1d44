// Compiles and runs a tiny C program with gcc so that layouts and constants
// written in TypeScript can be checked against the real system headers.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './tmp.js';

/** Why the probe cannot run here, or null when gcc is usable. */
export function gccMissing(headers: string[] = []): string | null {
  const r = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return 'gcc is not installed';
  for (const h of headers) {
    const probe = spawnSync('gcc', ['-E', '-x', 'c', '-'], {
      input: `#include <${h}>\n`,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    if (probe.status !== 0) return `header <${h}> is not installed`;
  }
  return null;
}

/** Builds `source` and returns its stdout; throws with gcc's message on failure. */
export function runC(source: string): string {
  const { dir, cleanup } = tempDir('probe');
  try {
    writeFileSync(join(dir, 'p.c'), source);
    const cc = spawnSync('gcc', ['-O0', '-w', '-o', join(dir, 'p'), join(dir, 'p.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc failed:\n${cc.stderr}`);
    const run = spawnSync(join(dir, 'p'), [], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`probe exited ${run.status}: ${run.stderr}`);
    return run.stdout;
  } finally {
    cleanup();
  }
}

/** Parses "key value [value...]" lines into a map of number arrays. */
export function parseProbe(out: string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const line of out.trim().split('\n')) {
    const [k, ...v] = line.split(' ');
    m.set(k!, v.map(Number));
  }
  return m;
}
