// The C peer: builds c/pio_exit.c with gcc into dist/bench-bin/ (only when the
// source is newer than the binary) and runs it.  It is the yardstick for
// "one bare PIO exit from ring 0" on this host, with no Node, no koffi and no
// emulator in the way.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_BIN_DIR, C_SOURCE_DIR } from './paths.js';

export interface CPioResult {
  n: number;
  syncRegs: boolean;
  minNs: number;
  medianNs: number;
  p99Ns: number;
  maxNs: number;
  meanNs: number;
  /** KVM_GET_TSC_KHZ of the peer's vCPU: the guest TSC rate on this host (0 if unknown). */
  tscKhz: number;
}

export class BenchToolError extends Error {}

/** Compiles the peer if needed; returns the binary's path. */
export function buildPioExit(): string {
  const src = join(C_SOURCE_DIR, 'pio_exit.c');
  const bin = join(BENCH_BIN_DIR, 'pio_exit');
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  mkdirSync(BENCH_BIN_DIR, { recursive: true });
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', bin, src], { encoding: 'utf8' });
  if (r.error) throw new BenchToolError(`cannot run gcc (${r.error.message}); install it with: apt-get install gcc`);
  if (r.status !== 0) throw new BenchToolError(`gcc failed on ${src}:\n${r.stderr}`);
  return bin;
}

export function runPioExit(opts: { n: number; syncRegs: boolean }): CPioResult {
  const bin = buildPioExit();
  const args = ['-n', String(opts.n), ...(opts.syncRegs ? ['-s'] : [])];
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw new BenchToolError(`${bin}: ${r.error.message}`);
  if (r.status !== 0) throw new BenchToolError(`${bin} failed (exit ${r.status ?? r.signal}): ${r.stderr.trim()}`);
  const kv = new Map<string, number>();
  for (const m of r.stdout.matchAll(/(\w+)=(-?\d+)/g)) kv.set(m[1]!, Number(m[2]));
  const need = (k: string): number => {
    const v = kv.get(k);
    if (v === undefined) throw new BenchToolError(`${bin}: no ${k} in output: ${r.stdout.trim()}`);
    return v;
  };
  return {
    n: need('n'),
    syncRegs: need('sync_regs') === 1,
    minNs: need('min_ns'),
    medianNs: need('median_ns'),
    p99Ns: need('p99_ns'),
    maxNs: need('max_ns'),
    meanNs: need('mean_ns'),
    tscKhz: Math.max(0, need('tsc_khz')),
  };
}
