// Where the benches find the repository (this file runs from dist/tools/bench/).
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const GUEST_ELF = join(REPO_ROOT, 'fixtures', 'guest', 'build', 'guest.elf');
/** Build output of the C peers: under dist/, so `git clean`/rebuilds treat it like other build output. */
export const BENCH_BIN_DIR = join(REPO_ROOT, 'dist', 'bench-bin');
export const C_SOURCE_DIR = join(REPO_ROOT, 'tools', 'bench', 'c');
