#!/usr/bin/env node
// Runs every compiled uvu suite under dist/test in one child process, echoes
// its report, and ends with the plain summary line CI reads:
// "N passed, N failed[, N skipped]".  An optional argument filters file paths.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const testDir = join(root, 'dist', 'test');
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.js') && (!filter || filter.test(relative(testDir, p)))) out.push(p);
  }
  return out;
}

const files = collect(testDir);
if (files.length === 0) {
  console.log('no test files found under dist/test');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const child = spawn(process.execPath, [join(root, 'tools', 'test-driver.mjs')], {
  cwd: root,
  env: {
    ...process.env,
    XENKVM_TEST_FILES: JSON.stringify(files.map((p) => ({ name: relative(testDir, p), path: p }))),
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});

let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4096);
});
child.on('close', (code, signal) => {
  // uvu colours its totals; strip ANSI before reading them.
  const plain = tail.replace(/\x1b\[[0-9;]*m/g, '');
  const num = (label) => {
    const m = plain.match(new RegExp(`${label}:\\s+(\\d+)`));
    return m ? Number(m[1]) : null;
  };
  const total = num('Total');
  const passed = num('Passed');
  const skipped = num('Skipped') ?? 0;
  if (total === null || passed === null) {
    console.log(`test process ended early (code ${code}, signal ${signal}) before reporting totals`);
    console.log(`0 passed, 1 failed`);
    process.exit(1);
  }
  let failed = total - passed;
  if (code !== 0 && failed === 0) failed = 1;
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
  process.exit(failed > 0 ? 1 : 0);
});
