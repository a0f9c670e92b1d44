// The command line as a user meets it: exit statuses and one-line errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GUEST_ELF, kvmSkipReason } from '../helpers/guest.js';

const BIN = fileURLToPath(new URL('../../../bin/xenkvm.js', import.meta.url));
const xenkvm = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60000 });
const skip = kvmSkipReason();
if (skip) console.log(`  skip cli (KVM part): ${skip}`);

test('run /etc/passwd: one line, exit 2', () => {
  const r = xenkvm('run', '/etc/passwd');
  assert.is(r.status, 2);
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /not an ELF/);
});

test('run missing.elf: one line, exit 2', () => {
  const r = xenkvm('run', 'missing.elf');
  assert.is(r.status, 2);
  assert.is(r.stderr.trim(), 'xenkvm: missing.elf: no such file');
});

test('bad usage: exit 2 without a stack trace', () => {
  for (const args of [['run'], ['frobnicate'], ['run', GUEST_ELF, '--vcpus', '9'], ['run', GUEST_ELF, '--mem', '3M']]) {
    const r = xenkvm(...args);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

(skip ? test.skip : test)('run selftest: console on stdout, RESULT: PASS, exit 0', () => {
  const r = xenkvm('run', GUEST_ELF, '--cmdline', 'selftest');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /RESULT: PASS\n$/);
});

(skip ? test.skip : test)('a failing guest program exits 1 (crash)', () => {
  const r = xenkvm('run', GUEST_ELF, '--cmdline', 'no-such-program');
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stdout, /RESULT: FAIL 1/);
});

test.run();
