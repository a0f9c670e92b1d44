#!/usr/bin/env node
// Builds the optional native helper: native/*.c -> dist/native/libxkcrc.so
// (CRC-32 by carry-less multiplication, src/migrate/native.ts; lazy
// restore of guest RAM with userfaultfd, src/migrate/ram/load-lazy.ts).
//   node tools/build-native.mjs             always compiles
//   node tools/build-native.mjs --if-stale  only when the library is missing or older than a source
// Always exits 0: without the library src/migrate/stream/format.ts's crc32 uses
// node:zlib and a restore reads guest memory before the guest starts, so a
// missing gcc or a failed build is one line, not an error.
// test/migrate/stream/crc32.test.ts fails if the library did not load where gcc is present.
//
// The file is compiled for baseline x86-64: the PCLMULQDQ and VPCLMULQDQ code
// carries per-function target attributes and is picked at load time by
// __builtin_cpu_supports, so the same library runs on CPUs without them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native');
const out = join(root, 'dist', 'native', 'libxkcrc.so');
const ifStale = process.argv.includes('--if-stale');
const fallback = 'CRC-32 uses node:zlib and restores load memory eagerly';

function newestSource() {
  let newest = statSync(fileURLToPath(import.meta.url)).mtimeMs; // the flags live here
  for (const name of readdirSync(srcDir)) {
    if (/\.(c|h)$/.test(name)) newest = Math.max(newest, statSync(join(srcDir, name)).mtimeMs);
  }
  return newest;
}

if (ifStale && existsSync(out) && statSync(out).mtimeMs >= newestSource()) process.exit(0);

// A library older than its sources is not left behind to be loaded by mistake.
function giveUp(why) {
  rmSync(out, { force: true });
  console.error(`build-native: ${why}; ${fallback}`);
  process.exit(0);
}

if (process.arch !== 'x64' || process.platform !== 'linux')
  giveUp(`skipped on ${process.platform}/${process.arch} (x86-64 Linux only)`);
const probe = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
if (probe.error || probe.status !== 0) giveUp('gcc not found (install with: apt-get install gcc)');

mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
const r = spawnSync(
  'gcc',
  [
    '-O2',
    '-fPIC',
    '-shared',
    '-pthread',
    '-fvisibility=hidden',
    '-Wall',
    '-Wextra',
    '-o',
    tmp,
    ...readdirSync(srcDir)
      .filter((n) => n.endsWith('.c'))
      .sort()
      .map((n) => join(srcDir, n)),
  ],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
if (r.error || r.status !== 0) {
  rmSync(tmp, { force: true });
  giveUp(`gcc failed (${r.error ? r.error.message : `exit ${r.status ?? r.signal}`})`);
}
renameSync(tmp, out); // atomic: a process loading the library never sees half a file
