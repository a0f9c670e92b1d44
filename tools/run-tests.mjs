#!/usr/bin/env node
// Runs the compiled uvu suites in one child process, echoes its report, and
// ends with the plain summary line CI reads: "N passed, N failed[, N skipped]".
//
//   node tools/run-tests.mjs [--fast] [REGEX]
//
// Suites are the test/**/*.test.ts files (run from their compiled
// dist/test/**/*.test.js); one whose source is gone is not run, even if an
// old build left its .js behind.  REGEX filters their paths under test/.
//
// Which suites need /dev/kvm is said by the file name, nothing else: a suite
// that needs it is named *.kvm.test.ts, in the folder of the module it tests,
// and still skips with a printed reason where /dev/kvm is absent.  --fast
// runs only the others, which must pass on a machine without /dev/kvm
// (test/tiers.test.ts holds the two sides of this rule together).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const testSrc = join(root, 'test');
const testDir = join(root, 'dist', 'test');
const args = process.argv.slice(2);
const fast = args.includes('--fast');
const pattern = args.find((a) => a !== '--fast');
const filter = pattern ? new RegExp(pattern) : null;
const NEEDS_KVM = /\.kvm\.test\.ts$/;

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts') && !(fast && NEEDS_KVM.test(name))) out.push(relative(testSrc, p));
  }
  return out;
}

const files = collect(testSrc)
  .map((ts) => ts.replace(/\.ts$/, '.js'))
  .filter((js) => !filter || filter.test(js));
if (files.length === 0) {
  console.log('no test files found under test/');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const unbuilt = files.filter((js) => !existsSync(join(testDir, js)));
if (unbuilt.length > 0) {
  console.log(`not compiled (run tsc first): ${unbuilt.join(', ')}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const child = spawn(process.execPath, [join(root, 'tools', 'test-driver.mjs')], {
  cwd: root,
  env: {
    ...process.env,
    XENKVM_TEST_FILES: JSON.stringify(files.map((name) => ({ name, path: join(testDir, name) }))),
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
