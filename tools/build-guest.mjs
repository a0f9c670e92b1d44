#!/usr/bin/env node
// Builds the freestanding C test guest: make -C fixtures/guest -> build/guest.elf.
//   node tools/build-guest.mjs             always runs make (make itself skips up-to-date objects)
//   node tools/build-guest.mjs --if-stale  only when guest.elf is missing or older than a source
// Exit codes: 0 built or up to date, 1 build failed, 2 a tool (gcc, make) is missing.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const guestDir = join(root, 'fixtures', 'guest');
const elf = join(guestDir, 'build', 'guest.elf');
const ifStale = process.argv.includes('--if-stale');

// Sources: everything under fixtures/guest except build/ and docs.
function newestSource(dir) {
  let newest = 0;
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) {
      if (ent.name !== 'build' && !ent.name.startsWith('.')) newest = Math.max(newest, newestSource(p));
    } else if (/\.(c|h|S|ld)$/.test(ent.name) || ent.name === 'Makefile') {
      newest = Math.max(newest, statSync(p).mtimeMs);
    }
  }
  return newest;
}

if (ifStale && existsSync(elf) && statSync(elf).mtimeMs >= newestSource(guestDir)) {
  process.exit(0);
}

function have(tool) {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}
const missing = ['gcc', 'make'].filter((t) => !have(t));
if (missing.length > 0) {
  console.error(`build-guest: ${missing.join(' and ')} not found; install with: apt-get install gcc make`);
  process.exit(2);
}

const r = spawnSync('make', ['-C', guestDir, '--no-print-directory'], { stdio: 'inherit' });
if (r.error) {
  console.error(`build-guest: could not run make: ${r.error.message}`);
  process.exit(1);
}
if (r.status !== 0) {
  console.error(`build-guest: make failed (exit ${r.status ?? r.signal})`);
  process.exit(1);
}
